"""Reproduce the CPU profiles' shipped warm starts (tripletlib/warm_starts/): ImageNet's stand-in.

Draws the synthetic pool of `pretraining.WARM_START_POOL` (600 people that no book split holds),
loads it at 64x32 and trains each backbone with `pretraining.train_warm_start` under
`pretraining.WARM_START_RECIPE` (batch-all + identity softmax, 3,000 steps of 16 x 4 images,
Section 3.1.3's augmentation plus colour gain and brightness). Writes the backbone weights and a
JSON record beside them. About 15-25 minutes per backbone on 2 CPU cores (TensorFlow).

    python scripts/make_warm_starts.py --work /tmp/warm-start [--backbones resnet50 mildnet]
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tripletlib import augment, data, files, models, pretraining  # noqa: E402
from tripletlib.synthetic import generate_synthetic_market  # noqa: E402


def make_warm_start(backbone: str, work: Path, out_dir: Path, steps: int | None = None,
                    progress: bool = True) -> Path:
    recipe = pretraining.WARM_START_RECIPE
    pool = work / "pool"
    generate_synthetic_market(pool, **pretraining.WARM_START_POOL, progress=progress)
    height, width, _ = recipe["input_shape"]
    train = data.load_splits(pool, height, width, work / "cache", splits=("train",),
                             progress=progress)["train"]  # fmt: skip
    import keras

    keras.utils.set_random_seed(recipe["seed"])
    embedder = models.build_embedder(
        backbone, input_shape=recipe["input_shape"], width=recipe["width"],
        input_normalization=recipe["input_normalization"], freeze_layers=0,
        batchnorm_momentum=recipe["batchnorm_momentum"],
    )  # fmt: skip
    augmentation = augment.build_augmentation(
        seed=recipe["seed"], colour_gain=recipe["colour_gain"], brightness=recipe["brightness"]
    )
    record = pretraining.train_warm_start(
        embedder, train.images, train.person_ids, steps=steps or recipe["steps"],
        p=recipe["p"], k=recipe["k"], learning_rate=recipe["learning_rate"][backbone],
        warmup_steps=recipe["warmup_steps"], margin=recipe["margin"], seed=recipe["seed"],
        augmentation=augmentation, progress=progress,
    )  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / pretraining.warm_start_path(backbone).name
    temporary = target.with_name(target.name.replace(".weights.h5", ".tmp.weights.h5"))
    models.get_backbone(embedder).save_weights(temporary)
    os.replace(temporary, target)
    record.update(backbone=backbone, pool=pretraining.WARM_START_POOL, backend=keras.backend.backend(),
                  recipe={k: v for k, v in recipe.items() if k != "learning_rate"},
                  sha256=hashlib.sha256(target.read_bytes()).hexdigest())  # fmt: skip
    files.write_json_atomic(target.with_name(target.name.replace(".weights.h5", ".json")), record)
    return target


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for the pool and cache")
    parser.add_argument("--out", type=Path, default=pretraining.WARM_START_DIR,
                        help="where the weights go (default: the package's warm_starts/)")
    parser.add_argument("--backbones", nargs="+", default=list(models.BACKBONES))
    parser.add_argument("--steps", type=int, default=None, help="default: the recipe's 3,000")
    args = parser.parse_args(argv)
    for backbone in args.backbones:
        print(make_warm_start(backbone, args.work, args.out, args.steps))


if __name__ == "__main__":
    main()
