"""Reproduce the CPU profiles' shipped label-free starts (tripletlib/starts/): ImageNet's stand-in.

Draws the unlabelled pool `pretraining.START_POOL` (synthetic people that no book split and no
validation split holds), loads its training images at 64x32 without their identity labels, and
trains each backbone by instance discrimination (`selfsupervised.train_instance_discrimination`,
`pretraining.START_RECIPE`). Writes the embedder's weights (backbone and head) and a JSON record
beside them. `--validate` scores the embedder every `--every` steps on the test split of the
validation set (`pretraining.VALIDATION_SET`: people outside every book split, where the recipe's
choices were made; never a book test split); the curve goes into the record.

    python scripts/make_starts.py --work /tmp/starts [--backbones resnet50 mildnet] [--validate]
    # the gpu profile's, on the device (scripts/gpu_run.py runs this):
    KERAS_BACKEND=jax python scripts/make_starts.py --work W --out W/starts --input-size 256x128 \
        --width 1 --workers 16
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

from tripletlib import (  # noqa: E402
    augment,
    data,
    evaluation,
    files,
    models,
    pretraining,
    selfsupervised,
)
from tripletlib.synthetic import generate_synthetic_market  # noqa: E402


class Validation(keras.callbacks.Callback):
    """Rank-1 / mAP (%) of `embedder` on (query, gallery) every `every` steps and at the end."""

    def __init__(self, embedder, query, gallery, every: int, steps: int, log_path: Path) -> None:
        super().__init__()
        self.embedder, self.query, self.gallery = embedder, query, gallery
        self.every, self.steps, self.log_path = every, steps, log_path
        self.curve: list[dict] = []
        self.started = time.perf_counter()

    def score(self) -> list[float]:
        result = evaluation.evaluate_embeddings(
            models.embed_images(self.embedder, self.query.images, 256),
            models.embed_images(self.embedder, self.gallery.images, 256), self.query, self.gallery,
        )  # fmt: skip
        return [round(100 * result.rank1, 1), round(100 * result.mAP, 1)]

    def on_train_batch_end(self, batch, logs=None) -> None:
        step = batch + 1
        if step % self.every and step != self.steps:
            return
        point = {"step": step, "seconds": round(time.perf_counter() - self.started),
                 "loss": round(float((logs or {}).get("loss", float("nan"))), 4),
                 "validation": self.score()}  # fmt: skip
        self.curve.append(point)
        print(json.dumps(point), flush=True)
        with open(self.log_path, "a") as log:
            log.write(json.dumps(point) + "\n")


def build_start_embedder(backbone: str, recipe: dict | None = None) -> keras.Model:
    """The embedder of `backbone` a start is trained in (the recipe's input, width, normalisation;
    default START_RECIPE, the CPU profiles')."""
    recipe = recipe or pretraining.START_RECIPE
    return models.build_embedder(
        backbone, input_shape=recipe["input_shape"], width=recipe["width"],
        input_normalization=recipe["input_normalization"], freeze_layers=0,
        batchnorm_momentum=recipe["batchnorm_momentum"],
    )  # fmt: skip


def make_start(backbone: str, work: Path, out_dir: Path, steps: int | None = None,
               validate: bool = False, every: int = 500, progress: bool = True,
               input_shape: tuple[int, int, int] | None = None, width: float | None = None,
               pool_ids: int | None = None, workers: int = 1) -> Path:
    """Train `backbone`'s label-free start (`steps` replaces the recipe's: a quick check;
    `input_shape` and `width` another size, e.g. the gpu profile's 256x128 at full width;
    `pool_ids` fewer unlabelled people, for a test)."""
    recipe = dict(pretraining.START_RECIPE)
    recipe["input_shape"] = tuple(input_shape or recipe["input_shape"])
    recipe["width"] = recipe["width"] if width is None else width
    height, width, _ = recipe["input_shape"]
    pool_settings = dict(pretraining.START_POOL)
    if pool_ids is not None:
        pool_settings["train_ids"] = pool_ids
    pool = work / f"pool-{pool_settings['train_ids']}"
    generate_synthetic_market(pool, **pool_settings, progress=progress, workers=workers)
    train = data.load_splits(pool, height, width, work / "cache", splits=("train",),
                             progress=progress)["train"]  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(recipe["seed"])
    embedder = build_start_embedder(backbone, recipe)
    steps = steps or recipe["steps"][backbone]
    callbacks, validation = [], None
    if validate:
        folder = work / "validation"
        generate_synthetic_market(folder, **pretraining.VALIDATION_SET, progress=progress)
        splits = data.load_splits(folder, height, width, work / "cache",
                                  splits=("query", "gallery"))  # fmt: skip
        validation = Validation(embedder, splits["query"], splits["gallery"], every, steps,
                                out_dir / f"{backbone}-validation.jsonl")  # fmt: skip
        callbacks.append(validation)
    augmentation = augment.build_augmentation(
        seed=recipe["seed"], colour_gain=recipe["colour_gain"],
        brightness=recipe["brightness"], erasing=recipe["erasing"],
    )  # fmt: skip
    record = selfsupervised.train_instance_discrimination(
        embedder, train.images, steps=steps, augmentation=augmentation,
        batch_size=recipe["batch_size"], temperature=recipe["temperature"],
        learning_rate=recipe["learning_rate"][backbone], warmup_steps=recipe["warmup_steps"],
        seed=recipe["seed"], progress=progress and not validate, callbacks=callbacks,
    )  # fmt: skip
    target = pretraining.start_path(backbone, recipe["input_shape"], recipe["width"], out_dir)
    with files.atomic_path(target) as temporary:
        embedder.save_weights(temporary)  # backbone and head (pretraining.load_start)
    record = {
        "backbone": backbone, "backend": keras.backend.backend(),
        "contains": "embedder (backbone and head)", "labels": "none (identity labels unused)",
        "pool": {**pool_settings, "images": int(len(train.images))},
        "recipe": {k: v for k, v in recipe.items() if k not in ("steps", "learning_rate")},
        **record,
        "validation": None if validation is None else {
            "set": pretraining.VALIDATION_SET, "rank1_map": validation.curve[-1]["validation"],
            "curve": validation.curve},
        "sha256": files.file_sha256(target),
    }  # fmt: skip
    files.write_json_atomic(pretraining.start_record_path(target), record)
    return target


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for the pool and cache")
    parser.add_argument("--out", type=Path, default=pretraining.START_DIR,
                        help="where the weights go (default: the package's starts/)")
    parser.add_argument("--backbones", nargs="+", default=list(models.BACKBONES),
                        choices=list(models.BACKBONES))
    parser.add_argument("--steps", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--validate", action="store_true",
                        help="score on the validation set's test split as it trains")
    parser.add_argument("--every", type=int, default=500, help="steps between validation scores")
    parser.add_argument("--input-size", default=None, metavar="HxW",
                        help="image size (default: the recipe's 64x32; the gpu profile: 256x128)")
    parser.add_argument("--width", type=float, default=None,
                        help="channel multiplier (default: the recipe's 0.25; the gpu profile: 1)")
    parser.add_argument("--pool-ids", type=int, default=None,
                        help="unlabelled people in the pool (default: START_POOL's 600)")
    parser.add_argument("--workers", type=int, default=1, help="processes drawing the pool")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    input_shape = None
    if args.input_size is not None:
        try:
            height, width = (int(part) for part in args.input_size.lower().split("x"))
            assert height > 0 and width > 0
        except (ValueError, AssertionError):
            parser.error(f"--input-size {args.input_size!r}; expected HxW, e.g. 256x128")
        input_shape = (height, width, 3)
    if args.width is not None and not 0 < args.width <= 4:
        parser.error(f"--width must be in (0, 4]; got {args.width}")
    for name in ("pool_ids", "workers"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be >= 1; got {args.steps}")
    if args.every < 1:
        parser.error(f"--every must be >= 1; got {args.every}")
    for backbone in args.backbones:
        print(make_start(backbone, args.work, args.out, args.steps, validate=args.validate,
                         every=args.every, progress=not args.quiet, input_shape=input_shape,
                         width=args.width, pool_ids=args.pool_ids, workers=args.workers))  # fmt: skip


if __name__ == "__main__":
    main()
