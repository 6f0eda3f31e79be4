"""Reproduce the CPU profiles' shipped warm starts (tripletlib/warm_starts/): ImageNet's stand-in.

Draws the synthetic pool of `pretraining.WARM_START_POOL` (600 people that no book split holds),
loads it at 64x32 and trains each backbone with `pretraining.train_warm_start` under
`pretraining.WARM_START_RECIPE` (batch-all + identity softmax, 16 x 4 images per step, ResNet-50
10,000 steps, MILDNet 8,000; Section 3.1.3's augmentation plus colour gain and brightness). Writes
the embedder's weights (backbone and head) and a JSON record beside them.

`--monitor ROOT ...` scores the embedder every `--every` steps on the test splits of those
Market-1501-shaped folders (e.g. the book's `cpu` and `ci` sets: measurement only, nothing is
chosen by it), with its trained head and with a random one; the curve goes into the record. The
shipped files were made with `--monitor` on the book's `cpu` and `ci` sets (docs/benchmarks.md):
on 2 CPU cores shared by both backbones, about 100 minutes for ResNet-50 and 35 for MILDNet.

    python scripts/make_warm_starts.py --work /tmp/warm-start [--backbones resnet50 mildnet]
        [--monitor results/cpu/data/synthetic-cpu-seed0 results/ci/data/synthetic-ci-seed0]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

from tripletlib import augment, data, evaluation, files, models, pretraining  # noqa: E402
from tripletlib.synthetic import generate_synthetic_market  # noqa: E402

MONITOR_SEED = 123  # the random head the monitor compares with


class Monitor(keras.callbacks.Callback):
    """Rank-1 / mAP (%) of `embedder` every `every` steps on `splits` (name -> query, gallery),
    with its own head and with `fresh`'s random head on its backbone."""

    def __init__(self, embedder, fresh, splits, every: int, steps: int, log_path: Path) -> None:
        super().__init__()
        self.embedder, self.fresh, self.splits = embedder, fresh, splits
        self.every, self.steps, self.log_path = every, steps, log_path
        self.curve: list[dict] = []
        self.started = time.perf_counter()

    def _score(self, embedder) -> dict[str, list[float]]:
        scores = {}
        for name, (query, gallery) in self.splits.items():
            result = evaluation.evaluate_embeddings(
                models.embed_images(embedder, query.images, 256),
                models.embed_images(embedder, gallery.images, 256), query, gallery,
            )  # fmt: skip
            scores[name] = [round(100 * result.rank1, 1), round(100 * result.mAP, 1)]
        return scores

    def on_train_batch_end(self, batch, logs=None) -> None:
        step = batch + 1
        if step % self.every and step != self.steps:
            return
        models.get_backbone(self.fresh).set_weights(
            models.get_backbone(self.embedder).get_weights()
        )
        point = {"step": step, "seconds": round(time.perf_counter() - self.started),
                 "head": self._score(self.embedder), "random_head": self._score(self.fresh)}  # fmt: skip
        self.curve.append(point)
        print(json.dumps(point), flush=True)
        with open(self.log_path, "a") as log:
            log.write(json.dumps(point) + "\n")


def make_warm_start(backbone: str, work: Path, out_dir: Path, steps: int | None = None,
                    progress: bool = True, monitor: list[Path] | None = None,
                    every: int = 1000) -> Path:  # fmt: skip
    recipe = pretraining.WARM_START_RECIPE
    steps = steps or pretraining.warm_start_steps(backbone)
    pool = work / "pool"
    generate_synthetic_market(pool, **pretraining.WARM_START_POOL, progress=progress)
    height, width, _ = recipe["input_shape"]
    train = data.load_splits(pool, height, width, work / "cache", splits=("train",),
                             progress=progress)["train"]  # fmt: skip
    splits = {}
    for root in monitor or []:
        loaded = data.load_splits(root, height, width, work / "cache", splits=("query", "gallery"))
        splits[Path(root).name] = (loaded["query"], loaded["gallery"])

    def build() -> keras.Model:
        return models.build_embedder(
            backbone, input_shape=recipe["input_shape"], width=recipe["width"],
            input_normalization=recipe["input_normalization"], freeze_layers=0,
            batchnorm_momentum=recipe["batchnorm_momentum"],
        )  # fmt: skip

    keras.utils.set_random_seed(recipe["seed"])
    embedder = build()
    callbacks, monitor_callback = [], None
    if splits:
        keras.utils.set_random_seed(MONITOR_SEED)
        out_dir.mkdir(parents=True, exist_ok=True)
        monitor_callback = Monitor(embedder, build(), splits, every, steps,
                                   out_dir / f"{backbone}-monitor.jsonl")  # fmt: skip
        callbacks.append(monitor_callback)
    augmentation = augment.build_augmentation(
        seed=recipe["seed"], colour_gain=recipe["colour_gain"], brightness=recipe["brightness"]
    )
    record = pretraining.train_warm_start(
        embedder, train.images, train.person_ids, steps=steps,
        p=recipe["p"], k=recipe["k"], learning_rate=recipe["learning_rate"][backbone],
        warmup_steps=recipe["warmup_steps"], margin=recipe["margin"], seed=recipe["seed"],
        augmentation=augmentation, progress=progress and not splits, callbacks=callbacks,
    )  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / pretraining.warm_start_path(backbone).name
    temporary = target.with_name(target.name.replace(".weights.h5", ".tmp.weights.h5"))
    embedder.save_weights(temporary)  # backbone and head (pretraining.load_warm_start)
    os.replace(temporary, target)
    record.update(backbone=backbone, pool=pretraining.WARM_START_POOL, backend=keras.backend.backend(),
                  recipe={k: v for k, v in recipe.items() if k not in ("learning_rate", "steps")},
                  contains="embedder (backbone and head)",
                  sha256=hashlib.sha256(target.read_bytes()).hexdigest())  # fmt: skip
    if monitor_callback is not None:
        record["monitor"] = {"splits": list(splits), "curve": monitor_callback.curve}
    files.write_json_atomic(target.with_name(target.name.replace(".weights.h5", ".json")), record)
    return target


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for the pool and cache")
    parser.add_argument("--out", type=Path, default=pretraining.WARM_START_DIR,
                        help="where the weights go (default: the package's warm_starts/)")
    parser.add_argument("--backbones", nargs="+", default=list(models.BACKBONES),
                        choices=list(models.BACKBONES))
    parser.add_argument("--steps", type=int, default=None,
                        help="default: the recipe's (ResNet-50 10,000, MILDNet 8,000)")
    parser.add_argument("--monitor", type=Path, nargs="*", default=[],
                        help="Market-1501-shaped folders whose test splits are scored as it trains")
    parser.add_argument("--every", type=int, default=1000, help="steps between monitor scores")
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be >= 1; got {args.steps}")
    if args.every < 1:
        parser.error(f"--every must be >= 1; got {args.every}")
    for root in args.monitor:
        if not (root / "query").is_dir() or not (root / "bounding_box_test").is_dir():
            parser.error(f"--monitor {root}: expected a Market-1501 folder with query/ and "
                         "bounding_box_test/")  # fmt: skip
    for backbone in args.backbones:
        print(make_warm_start(backbone, args.work, args.out, args.steps,
                              monitor=args.monitor, every=args.every))  # fmt: skip


if __name__ == "__main__":
    main()
