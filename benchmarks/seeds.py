"""The thesis' three comparisons over seeds (issue 14): the four rows of tables 4.1-4.3 and the
hand-crafted baseline for each seed on one profile, then mean and spread per row.

Each seed draws its own synthetic dataset (`profile.synthetic_seed + seed`, as the book does) and
trains the rows from the shared warm start with that seed. The comparisons are ResNet-50 against
MILDNet (4.1), lossless against triplet (4.2) and online against offline mining (4.3); a difference
counts as larger than the spread when it exceeds both rows' standard deviations added. Because the
rows of one seed share the dataset and the warm start, each comparison is also read paired: the
difference at each seed, its mean and standard deviation, and whether it has the same sign at every
seed.

    python benchmarks/seeds.py --profile cpu --seeds 0 1 2 --out results/seeds   # ~25-35 min
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from tripletlib import config  # noqa: E402
from tripletlib.workspace import Workspace  # noqa: E402

COMPARISONS = (
    ("4.1: ResNet-50 over MILDNet", "resnet50-triplet-offline", "mildnet-triplet-offline"),
    ("4.2: lossless over triplet", "resnet50-lossless-offline", "resnet50-triplet-offline"),
    ("4.3: online (batch-all) over offline", "resnet50-batch-all-online",
     "resnet50-lossless-offline"),
)  # fmt: skip
BASELINE = "hand-crafted (no learning)"


def run_seed(profile: str, seed: int, out: Path) -> dict[str, dict[str, float]]:
    """Rank-1 and mAP of the baseline and the four rows for one seed (trained or found)."""
    workspace = Workspace(profile, None, out / f"seed{seed}", seed)
    baseline = workspace.baseline_metrics()
    scores = {BASELINE: {"rank1": baseline["rank1"], "mAP": baseline["mAP"]}}
    for row in config.THESIS_ROWS:
        trained = workspace.train_row(row)["trained"]
        scores[row] = {"rank1": trained["rank1"], "mAP": trained["mAP"]}
    return scores


def summarise(per_seed: dict[int, dict[str, dict[str, float]]]) -> dict[str, Any]:
    """Mean and standard deviation (ddof=1 over seeds) per row and metric, and the comparisons."""
    rows = list(next(iter(per_seed.values())))
    summary: dict[str, Any] = {"rows": {}, "comparisons": []}
    for row in rows:
        summary["rows"][row] = {
            metric: {
                "mean": float(np.mean([scores[row][metric] for scores in per_seed.values()])),
                "std": float(np.std([scores[row][metric] for scores in per_seed.values()],
                                    ddof=1 if len(per_seed) > 1 else 0)),
            }
            for metric in ("rank1", "mAP")
        }  # fmt: skip
    for name, better, worse in COMPARISONS:
        a, b = summary["rows"][better]["mAP"], summary["rows"][worse]["mAP"]
        difference = a["mean"] - b["mean"]
        paired = [scores[better]["mAP"] - scores[worse]["mAP"] for scores in per_seed.values()]
        summary["comparisons"].append({
            "comparison": name, "mAP difference": difference,
            "spread": a["std"] + b["std"], "larger than the spread": abs(difference) > a["std"] + b["std"],
            "per-seed differences": paired,
            "paired std": float(np.std(paired, ddof=1 if len(paired) > 1 else 0)),
            "same sign at every seed": bool(all(d > 0 for d in paired) or all(d < 0 for d in paired)),
        })  # fmt: skip
    return summary


def markdown(per_seed: dict[int, Any], summary: dict[str, Any]) -> str:
    seeds = sorted(per_seed)
    lines = ["| row | " + " | ".join(f"seed {s} Rank-1 / mAP" for s in seeds) + " | mean mAP ± std |",
             "|---|" + "---|" * (len(seeds) + 1)]  # fmt: skip
    for row, values in summary["rows"].items():
        cells = [f"{100 * per_seed[s][row]['rank1']:.1f} / {100 * per_seed[s][row]['mAP']:.1f}"
                 for s in seeds]  # fmt: skip
        lines.append(f"| {row} | " + " | ".join(cells)
                     + f" | {100 * values['mAP']['mean']:.1f} ± {100 * values['mAP']['std']:.1f} |")
    lines += ["", "| comparison | mAP difference | spread (sum of stds) | larger than the spread "
              "| per-seed differences | paired mean ± std | same sign at every seed |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for item in summary["comparisons"]:
        paired = ", ".join(f"{100 * d:+.1f}" for d in item["per-seed differences"])
        lines.append(f"| {item['comparison']} | {100 * item['mAP difference']:+.1f} | "
                     f"{100 * item['spread']:.1f} | {item['larger than the spread']} | {paired} | "
                     f"{100 * item['mAP difference']:+.1f} ± {100 * item['paired std']:.1f} | "
                     f"{item['same sign at every seed']} |")  # fmt: skip
    return "\n".join(lines)


def main(argv=None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=sorted(config.PROFILES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("results/seeds"))
    args = parser.parse_args(argv)
    if any(seed < 0 for seed in args.seeds):
        parser.error(f"--seeds must be >= 0; got {args.seeds}")
    per_seed = {seed: run_seed(args.profile, seed, args.out) for seed in args.seeds}
    summary = summarise(per_seed)
    report = {"profile": args.profile, "per_seed": per_seed, **summary}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "seeds.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(per_seed, summary)
    (args.out / "seeds.md").write_text(text + "\n")
    print(text)
    return report


if __name__ == "__main__":
    main()
