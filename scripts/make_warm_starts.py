"""Reproduce the CPU profiles' shipped warm starts (tripletlib/warm_starts/): ImageNet's stand-in.

Trains each backbone with `pretraining.train_warm_start` (batch-all + identity softmax, 16 x 4
images per step, Section 3.1.3's augmentation plus colour gain and brightness, warm-up and cosine)
through the stages of `pretraining.warm_start_stages`: first on the synthetic pool
`WARM_START_POOL` (600 people that no book split holds; ResNet-50 10,000 steps, MILDNet 8,000),
then on each larger pool of `pretraining.warm_start_later_pools` (1,500 other people, then
3,000, 6,000 and 9,995; ResNet-50 5,000 steps, MILDNet 4,000 each, a new warm-up and cosine cycle
at half the peak learning rate). Each pool is drawn by the generator and loaded at 64x32. Writes
the embedder's weights (backbone and head) and a JSON record beside them (one entry per stage).

`--monitor ROOT ...` scores the embedder every `--every` steps on the test splits of those
Market-1501-shaped folders (e.g. the book's `cpu` and `ci` sets: measurement only), with its
trained head and with a random one; the curve goes into the stage's record. `--continue-from
FILE` starts from a file this script wrote with fewer stages and trains the stages after them.
Times on 2 CPU cores are in docs/benchmarks.md (about 100 minutes for ResNet-50's first stage
while MILDNet's shared the cores).

    python scripts/make_warm_starts.py --work /tmp/warm-start [--backbones resnet50 mildnet]
        [--monitor results/cpu/data/synthetic-cpu-seed0 results/ci/data/synthetic-ci-seed0]
        [--continue-from FILE]
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


def _earlier_stages(backbone: str, path: Path) -> list[dict]:
    """The stage records of a warm start this script wrote, checked against the recipe's pools:
    the stages `make_warm_start(continue_from=path)` does not train again."""
    record = json.loads(pretraining.warm_start_record_path(path).read_text())
    stages = record.get("stages", [record])  # a one-stage record is its own stage
    pools = [stage["pool"] for stage in pretraining.warm_start_stages(backbone)]
    done = [stage.get("pool") for stage in stages]
    fits = record.get("backbone") == backbone and len(done) < len(pools)
    if not fits or done != pools[: len(done)]:
        raise ValueError(
            f"{path}: a {record.get('backbone')} warm start on pools {done}; expected a {backbone} "
            f"one on fewer than all of the recipe's pools {pools}, in order"
        )
    return stages


def make_warm_start(backbone: str, work: Path, out_dir: Path, steps: int | None = None,
                    progress: bool = True, monitor: list[Path] | None = None,
                    every: int = 1000, continue_from: Path | None = None) -> Path:  # fmt: skip
    """Train `backbone`'s warm start through `pretraining.warm_start_stages` and write it.

    `steps` replaces every stage's steps (a quick check); `continue_from` loads a file this
    function wrote (its JSON record beside it) and trains only the stages after the ones its record
    lists, instead of training those again.
    """
    recipe = pretraining.WARM_START_RECIPE
    height, width, _ = recipe["input_shape"]
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

    out_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(recipe["seed"])
    embedder = build()
    stages = []
    if continue_from is not None:
        stages = _earlier_stages(backbone, continue_from)
        embedder.load_weights(continue_from)
    for number, stage in enumerate(pretraining.warm_start_stages(backbone), start=1):
        if number <= len(stages):
            continue
        if number > 1:
            keras.utils.set_random_seed(stage["seed"])
        pool = work / ("pool" if number == 1 else f"pool-{number}")
        generate_synthetic_market(pool, **stage["pool"], progress=progress)
        train = data.load_splits(pool, height, width, work / "cache", splits=("train",),
                                 progress=progress)["train"]  # fmt: skip
        stage_steps = steps or stage["steps"]
        callbacks, monitor_callback = [], None
        if splits:
            keras.utils.set_random_seed(MONITOR_SEED)
            monitor_callback = Monitor(embedder, build(), splits, every, stage_steps,
                                       out_dir / f"{backbone}-monitor.jsonl")  # fmt: skip
            callbacks.append(monitor_callback)
        augmentation = augment.build_augmentation(
            seed=stage["seed"], colour_gain=recipe["colour_gain"], brightness=recipe["brightness"]
        )
        record = pretraining.train_warm_start(
            embedder, train.images, train.person_ids, steps=stage_steps,
            p=recipe["p"], k=recipe["k"], learning_rate=stage["learning_rate"],
            warmup_steps=stage["warmup_steps"], margin=recipe["margin"], seed=stage["seed"],
            augmentation=augmentation, progress=progress and not splits, callbacks=callbacks,
        )  # fmt: skip
        record["pool"] = stage["pool"]
        if monitor_callback is not None:
            record["monitor"] = {"splits": list(splits), "curve": monitor_callback.curve}
        stages.append(record)
    target = out_dir / pretraining.warm_start_path(backbone).name
    temporary = target.with_name(target.name.replace(".weights.h5", ".tmp.weights.h5"))
    embedder.save_weights(temporary)  # backbone and head (pretraining.load_warm_start)
    os.replace(temporary, target)
    record = {
        "backbone": backbone, "backend": keras.backend.backend(),
        "contains": "embedder (backbone and head)",
        "steps": sum(stage["steps"] for stage in stages),
        "seconds": round(sum(stage["seconds"] for stage in stages), 1),
        "pools": [stage["pool"] for stage in stages], "losses": stages[-1]["losses"],
        "recipe": {k: v for k, v in recipe.items()
                   if k not in ("learning_rate", "steps", "later_stages")},
        "stages": stages, "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
    }  # fmt: skip
    files.write_json_atomic(pretraining.warm_start_record_path(target), record)
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
    parser.add_argument("--continue-from", type=Path, default=None,
                        help="a file this script wrote with fewer stages (its .json beside it): "
                             "train the stages after its own only")  # fmt: skip
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be >= 1; got {args.steps}")
    if args.every < 1:
        parser.error(f"--every must be >= 1; got {args.every}")
    for root in args.monitor:
        if not (root / "query").is_dir() or not (root / "bounding_box_test").is_dir():
            parser.error(f"--monitor {root}: expected a Market-1501 folder with query/ and "
                         "bounding_box_test/")  # fmt: skip
    if args.continue_from is not None:
        record = pretraining.warm_start_record_path(args.continue_from)
        if not args.continue_from.name.endswith(".weights.h5") or not record.is_file():
            parser.error(f"--continue-from {args.continue_from}: expected a .weights.h5 file "
                         "written by this script, with its .json record beside it")  # fmt: skip
        if len(args.backbones) != 1:
            parser.error("--continue-from needs exactly one --backbones")
        try:
            _earlier_stages(args.backbones[0], args.continue_from)
        except ValueError as error:
            parser.error(f"--continue-from {error}")
    for backbone in args.backbones:
        print(make_warm_start(backbone, args.work, args.out, args.steps, monitor=args.monitor,
                              every=args.every, continue_from=args.continue_from))  # fmt: skip


if __name__ == "__main__":
    main()
