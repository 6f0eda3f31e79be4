"""Does a training row learn? Untrained versus trained mAP of one thesis row, over seeds.

A diagnostic for the CPU profiles (docs/benchmarks.md, "The rows from the label-free start"). It
trains one row with `training.train_row` on a synthetic dataset and prints the untrained, start
and trained test mAP and the per-epoch losses, beside the hand-crafted baseline on the same test
split. Switches change one thing at a time:

- `--set KEY=VALUE`: a profile field (e.g. `learning_rate=0` trains nothing but lets BatchNorm's
  running statistics settle: the control for "trained beats untrained").
- `--camera-effects full|half|none`: regenerate the dataset with the cameras' colour cast,
  brightness, contrast and gamma halved (`half`) or with every camera drawn like camera 1 (`none`,
  same scene and optics everywhere). `full` is the package's generator as it is.
- `--zero-init-residual`: set the last BatchNorm scale of every ResNet-50 residual block to 0
  (Goyal et al. 2017), so that a from-scratch network starts as a shallow one.

Every record carries `phase_seconds` (`RunResult.phase_seconds`, kept by the trainer): the wall
seconds spent in the warm start, the evaluations (untrained, after the warm start, trained), the
triplet fits (Keras `fit` with its validation and checkpoint callbacks, including the first step's
tracing), mining and the checkpoints alone. The switches pass objects to `training.train_row`
(`build_embedder`); nothing in the library is patched but the camera styles
of the synthetic generator.

The label-free start (`tripletlib.pretraining`) is a profile field: `--set warm_start=none`
trains from random weights, and the record shows "pretrained" (the start alone) beside
"untrained" (random weights) and "trained". `--data DIR` trains and tests on another folder, e.g.
the validation set (`pretraining.VALIDATION_SET`), where the CPU profiles' settings are chosen.

    python benchmarks/learning_probe.py resnet50-triplet-offline                 # ci profile
    python benchmarks/learning_probe.py resnet50-batch-all-online --seeds 0 1 2
    python benchmarks/learning_probe.py resnet50-triplet-offline --set learning_rate=0
    python benchmarks/learning_probe.py resnet50-triplet-offline --camera-effects none
    python benchmarks/learning_probe.py resnet50-triplet-offline --set warm_start=none
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tripletlib.quiet import import_keras_quietly  # noqa: E402

keras = import_keras_quietly()


from tripletlib import baseline, config, data, drawing, models, synthetic, training  # noqa: E402

CAMERA_EFFECTS = ("full", "half", "none")


def soften_cameras(effects: str) -> None:
    """Patch `drawing.CAMERAS` in this process (see the module doc)."""
    if effects == "half":
        for camera, style in list(drawing.CAMERAS.items()):
            drawing.CAMERAS[camera] = dataclasses.replace(
                style,
                gains=tuple(1 + (g - 1) / 2 for g in style.gains),
                brightness=style.brightness / 2,
                contrast=1 + (style.contrast - 1) / 2,
                gamma=1 + (style.gamma - 1) / 2,
            )
    elif effects == "none":
        first = drawing.CAMERAS[1]
        for camera, style in list(drawing.CAMERAS.items()):
            drawing.CAMERAS[camera] = dataclasses.replace(first, view_weights=style.view_weights)


def zero_init_residual_embedder(backbone, **options):
    """`models.build_embedder`, then the last BatchNorm scale of every residual block set to 0."""
    embedder = models.build_embedder(backbone, **options)
    if backbone == "resnet50":
        for layer in models.get_backbone(embedder).layers:
            if layer.name.endswith("_3_bn"):
                layer.gamma.assign(keras.ops.zeros_like(layer.gamma))
    return embedder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("row", help="BACKBONE-LOSS-MINING, e.g. resnet50-batch-hard-online")
    parser.add_argument("--profile", default="ci", choices=sorted(config.PROFILES))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--camera-effects", choices=CAMERA_EFFECTS, default="full")
    parser.add_argument("--zero-init-residual", action="store_true")
    parser.add_argument("--out", default="results/learning_probe")
    parser.add_argument("--data", default=None,
                        help="a Market-1501-shaped folder to train and test on (e.g. the "
                             "validation set, pretraining.VALIDATION_SET) instead of generating "
                             "the profile's synthetic set")
    parser.add_argument("--json", action="store_true", help="one JSON line per seed")
    args = parser.parse_args()

    profile = config.resolve_profile(args.profile)
    try:
        profile = profile.replace(**config.parse_overrides(args.set))
    except ValueError as error:
        raise SystemExit(f"--set: {error}") from None
    if profile.dataset != "synthetic":
        raise SystemExit(
            f"profile {profile.name!r} needs Market-1501; the probe uses synthetic data"
        )
    soften_cameras(args.camera_effects)
    swaps = {}
    if args.zero_init_residual:
        swaps["build_embedder"] = zero_init_residual_embedder

    out = Path(args.out)
    if args.data is not None:
        if args.camera_effects != "full":
            raise SystemExit("--camera-effects changes a generated set; it does not apply to --data")
        data_root = Path(args.data)
    else:
        data_root = out / f"data-{profile.name}-{args.camera_effects}"
        synthetic.generate_synthetic_market(
            data_root,
            train_ids=profile.synthetic_train_ids,
            test_ids=profile.synthetic_test_ids,
            seed=profile.synthetic_seed,
            progress=False,
        )
    try:
        backbone, loss, mining = config.parse_row(args.row)
    except ValueError as error:
        raise SystemExit(f"row: {error}") from None
    test = data.load_splits(data_root, profile.image_height, profile.image_width,
                            out / ".cache", splits=("query", "gallery"))  # fmt: skip
    reference = baseline.evaluate_baseline(test["query"], test["gallery"])
    reference = {"rank1": round(reference["rank1"], 4), "mAP": round(reference["mAP"], 4)}
    for seed in args.seeds:
        started = time.perf_counter()
        result = training.train_row(
            backbone, loss, mining, profile, data_root, out / f"run-seed{seed}",
            seed=seed, resume=False, progress=False, cache_dir=out / ".cache", **swaps,
        )  # fmt: skip
        history = result.history()
        record = {
            "row": args.row,
            "seed": seed,
            "changes": {"set": args.set, "camera_effects": args.camera_effects,
                        "zero_init_residual": args.zero_init_residual},
            "pretrained_mAP": round(result.metrics["pretrained"]["mAP"], 4)
            if "pretrained" in result.metrics else None,
            "pretraining": result.metrics.get("pretraining"),
            "baseline": reference,
            "untrained_mAP": round(result.metrics["untrained"]["mAP"], 4),
            "trained_mAP": round(result.metrics["trained"]["mAP"], 4),
            "trained_rank1": round(result.metrics["trained"]["rank1"], 4),
            "loss": [round(v, 4) for v in history["loss"]],
            "val_loss": [round(v, 4) for v in history["val_loss"]],
            "seconds": round(time.perf_counter() - started),
            "phase_seconds": {k: round(v, 1) for k, v in result.phase_seconds.items()},
        }  # fmt: skip
        if args.json:
            print(json.dumps(record), flush=True)
        else:
            print(
                f"{args.row} seed {seed}: mAP untrained {record['untrained_mAP']:.4f} -> trained "
                f"{record['trained_mAP']:.4f} (Rank-1 {record['trained_rank1']:.4f}); "
                f"pretrained {record['pretrained_mAP']}, {record['pretraining']}; "
                f"loss per epoch {record['loss']}; "
                f"val {record['val_loss']}; {record['seconds']} s "
                f"({', '.join(f'{k} {v} s' for k, v in record['phase_seconds'].items())})",
                flush=True,
            )


if __name__ == "__main__":
    sys.exit(main())
