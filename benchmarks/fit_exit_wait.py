"""How long does Keras' `fit` wait after its last step? A short fit with 1 or 2 loader workers.

Under the TensorFlow backend Keras reads a `PyDataset` through tf.data. With one worker (Keras'
default) it adds `prefetch(AUTOTUNE)`; at the end of `fit` the pipeline's iterator is destroyed,
and its destructor joins tf.data's autotuning thread (`Model::OptimizeLoop`), which sleeps between
rounds for up to 60 s. Measured with TF 2.21 on 2 cores: a 150-step MILDNet identity-classification
fit on the `ci` profile's data returned 0 s or about 55 s after its last step, both cores idle in the wait
(docs/benchmarks.md, "The wait at the end of fit"). With more than one worker Keras feeds the
batches from its own threads and turns the autotuning off; `tripletlib.sampling.LOADER_WORKERS`
is that setting for every dataset of the library.

Each repeat is a fresh process that trains one embedder with
`selfsupervised.train_instance_discrimination` (the label-free start's fit, batches from
`sampling.ImageBatches`) on the ci synthetic training images (as each notebook's kernel does)
and prints the seconds of `fit`, the seconds from Keras' `on_train_end` to `fit` returning (the
wait), and the final loss (identical for 1 and 2 workers: the batches do not change).

    python benchmarks/fit_exit_wait.py                          # mildnet, workers 1 and 2, 3 each
    python benchmarks/fit_exit_wait.py --workers 1 --repeats 5 --steps 150
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tripletlib.quiet import import_keras_quietly  # noqa: E402

keras = import_keras_quietly()

from tripletlib import augment, config, data, models, sampling, selfsupervised, synthetic  # noqa: E402

DEFAULT_STEPS = 150


class TrainEndClock(keras.callbacks.Callback):
    """Records when Keras calls `on_train_end` (after the last step, before `fit` returns)."""

    def __init__(self) -> None:
        super().__init__()
        self.ended = None

    def on_train_end(self, logs=None):
        self.ended = time.perf_counter()


def timed_fit(clock: TrainEndClock):
    """`keras.Model.fit` with `clock` among its callbacks."""
    original = keras.Model.fit

    def fit(self, *args, **kwargs):
        kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), clock]
        return original(self, *args, **kwargs)

    return fit


def one_fit(args) -> dict:
    """One fit in this process with `args.workers[0]` loader workers."""
    profile = config.resolve_profile("ci")
    steps = args.steps or DEFAULT_STEPS
    data_root = Path(args.out) / "data-ci"
    train = data.load_splits(
        data_root, profile.image_height, profile.image_width, Path(args.out) / ".cache"
    )["train"]
    clock = TrainEndClock()
    keras.Model.fit = timed_fit(clock)
    workers = args.workers[0]
    sampling.LOADER_WORKERS = workers  # read by every dataset of the library when it is built
    keras.utils.set_random_seed(0)
    embedder = models.build_embedder(args.backbone, **profile.embedder_options(freeze_layers=0))
    started = time.perf_counter()
    augmentation = augment.build_augmentation(
        seed=0, colour_gain=profile.colour_gain, brightness=profile.brightness
    )
    record = selfsupervised.train_instance_discrimination(
        embedder, train.images, steps=steps, augmentation=augmentation, batch_size=32, seed=0,
    )  # fmt: skip
    returned = time.perf_counter()
    return {
        "backbone": args.backbone, "workers": workers, "steps": steps,
        "fit_seconds": round(returned - started, 1),
        "wait_after_last_step_seconds": round(returned - clock.ended, 1),
        "loss": record["loss"],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="mildnet", choices=config.BACKBONE_CHOICES)
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per setting")
    parser.add_argument("--steps", type=int, default=None, help=f"default: {DEFAULT_STEPS}")
    parser.add_argument("--out", default="results/fit_exit_wait")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_fit(args)), flush=True)
        return

    profile = config.resolve_profile("ci")
    synthetic.generate_synthetic_market(
        Path(args.out) / "data-ci",
        train_ids=profile.synthetic_train_ids,
        test_ids=profile.synthetic_test_ids,
        seed=profile.synthetic_seed,
        progress=False,
    )
    # One fit per process, as in the book (each notebook's kernel) and in the diagnosis.
    for workers in args.workers:
        for repeat in range(args.repeats):
            command = [sys.executable, __file__, "--one", "--backbone", args.backbone,
                       "--workers", str(workers), "--out", args.out]  # fmt: skip
            if args.steps:
                command += ["--steps", str(args.steps)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            record = json.loads(output.strip().splitlines()[-1])
            print(json.dumps({**record, "repeat": repeat}), flush=True)


if __name__ == "__main__":
    main()
