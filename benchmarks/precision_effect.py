"""Does bf16 move a trained row's Rank-1 or mAP?

Rebuilds a finished run's embedder under float32 and under `mixed_bfloat16`
(`devices.precision`), loads the same trained weights into both, embeds the run's query and
gallery and scores both with the library's evaluation. Prints the largest change of a unit
embedding and the metrics of each precision.

    python benchmarks/precision_effect.py --run results/runs/resnet50-triplet-offline \
        --data results/data/synthetic-cpu-seed0
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tripletlib import data, devices, evaluation, models, runs  # noqa: E402


def precision_effect(run_dir: Path, data_root: Path, cache_dir: Path | None = None) -> dict:
    run_config = runs.read_run_config(run_dir)
    profile = runs.run_profile(run_config)
    splits = data.load_splits(data_root, profile.image_height, profile.image_width, cache_dir,
                              splits=("query", "gallery"))  # fmt: skip
    report: dict = {"run": str(run_dir), "backend": keras.backend.backend(), "precisions": {}}
    embeddings = {}
    for policy in ("float32", "mixed_bfloat16"):
        embedder = runs.load_embedder(run_dir, precision=policy)
        devices.check_float32_embeddings(embedder)
        query = models.embed_images(embedder, splits["query"].images, profile.embed_batch_size)
        gallery = models.embed_images(embedder, splits["gallery"].images, profile.embed_batch_size)
        embeddings[policy] = np.concatenate([query, gallery])
        result = evaluation.evaluate_embeddings(query, gallery, splits["query"], splits["gallery"])
        report["precisions"][policy] = {"rank1": round(float(result.rank1), 4),
                                        "mAP": round(float(result.mAP), 4)}  # fmt: skip
    difference = np.abs(embeddings["float32"] - embeddings["mixed_bfloat16"])
    report["max_embedding_change"] = float(difference.max())
    report["unit_norm_error_bf16"] = float(
        np.abs(np.linalg.norm(embeddings["mixed_bfloat16"], axis=1) - 1).max()
    )
    return report


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished run folder")
    parser.add_argument("--data", type=Path, required=True, help="the run's Market-1501 folder")
    parser.add_argument("--cache", type=Path, default=None, help="decoded-image cache folder")
    args = parser.parse_args(argv)
    if not (args.run / runs.WEIGHTS_FILE).is_file():
        parser.error(f"--run {args.run}: expected a finished run with {runs.WEIGHTS_FILE}")
    report = precision_effect(args.run, args.data, args.cache)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
