"""The first training step against the next ones: how long Keras takes to trace (and, under
TensorFlow, optimise) a row's training step on this machine, for the triplet model of Fig. 3.7
(three branches) and the online one (one branch), with and without the augmentation layer.

Uses a profile's embedder (default `ci`: quarter-width, 64x32) on a generated 12-person set and
times `fit` over `--steps` batches: the first step includes the tracing, the median of the others
is a steady step.

    python benchmarks/first_step.py                      # about 3 minutes on 2 cores
    python benchmarks/first_step.py --models triplet:1 --profile cpu
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tripletlib import augment, config, data, losses, models, sampling  # noqa: E402
from tripletlib.synthetic import generate_synthetic_market  # noqa: E402


def time_steps(kind: str, augmented: bool, profile: config.Profile, train: data.Split,
               steps: int) -> dict[str, float]:
    """Seconds of the first `fit` step and the median of the others, for one model."""
    keras.utils.set_random_seed(0)
    embedder = models.build_embedder("resnet50", **profile.embedder_options())
    layer = augment.build_augmentation(seed=1, **profile.augmentation_options()) if augmented else None
    if kind == "triplet":
        model, loss = models.build_triplet_model(embedder, layer), losses.LOSSES["triplet"]()
        batches = sampling.TripletDataset(train.images, train.person_ids, train.camera_ids,
                                          batch_size=profile.triplet_batch_size,
                                          steps_per_epoch=steps, seed=0)  # fmt: skip
    else:
        model, loss = models.build_online_model(embedder, layer), losses.LOSSES["batch-all"]()
        batches = sampling.PKDataset(train.images, train.person_ids, p=profile.pk_identities,
                                     k=profile.pk_images, steps_per_epoch=steps, seed=0)  # fmt: skip
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    ends: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            ends.append(time.perf_counter())

    started = time.perf_counter()
    model.fit(batches, epochs=1, shuffle=False, verbose=0, callbacks=[Clock()])
    seconds = np.diff([started, *ends])
    return {"first": float(seconds[0]), "steady": float(np.median(seconds[1:]))}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="ci", choices=sorted(config.PROFILES))
    parser.add_argument("--models", nargs="+", default=["triplet:1", "triplet:0", "online:1",
                                                        "online:0"],
                        help="KIND:AUGMENTED, KIND triplet or online")  # fmt: skip
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error(f"--steps must be >= 2; got {args.steps}")
    profile = config.resolve_profile(args.profile)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "data"
        generate_synthetic_market(root, train_ids=12, test_ids=4, progress=False)
        train = data.load_splits(root, profile.image_height, profile.image_width,
                                 splits=("train",))["train"]  # fmt: skip
        for spec in args.models:
            kind, _, augmented = spec.partition(":")
            if kind not in ("triplet", "online") or augmented not in ("0", "1"):
                parser.error(f"--models {spec!r}; expected triplet:0, triplet:1, online:0 or online:1")
            result = time_steps(kind, augmented == "1", profile, train, args.steps)
            print(f"{kind:<7} augmentation {'on ' if augmented == '1' else 'off'}: first step "
                  f"{result['first']:.1f} s, then {1000 * result['steady']:.0f} ms a step",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
