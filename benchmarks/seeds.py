"""The thesis' three comparisons over seeds (Tables 4.1-4.3): the four rows of the tables and the
hand-crafted baseline for each seed on one profile, then the paired differences
(`tripletlib.comparisons`).

Each seed draws its own synthetic dataset (`profile.synthetic_seed + seed`, as the book does) and
trains the rows from the shipped label-free start with that seed, in `OUT/seed<N>/` (a finished
row is found, not trained again). The record (`comparisons.seed_record`) goes to `--record`
(default `OUT/seeds.json`) and the tables, as Markdown, to `OUT/seeds.md` and stdout.

    python benchmarks/seeds.py --profile ci --seeds 0 1 2 --out results/seeds-ci \
        --record book/records/seeds_ci.json     # about 40 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tripletlib import comparisons, config, files  # noqa: E402
from tripletlib.tables import format_markdown_table  # noqa: E402
from tripletlib.workspace import Workspace  # noqa: E402


def run_seed(profile: str, seed: int, out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The metrics of the four rows and of the baseline for one seed (trained or found)."""
    workspace = Workspace(profile, None, out / f"seed{seed}", seed, progress=True)
    baseline = workspace.baseline_metrics()
    rows = {row: workspace.train_row(row) for row in config.THESIS_ROWS}
    return rows, baseline


def markdown(record: dict[str, Any]) -> str:
    """The per-seed rows, their means and the paired comparisons as Markdown tables."""
    return "\n".join([
        f"Profile {record['profile']}, seeds {', '.join(sorted(record['seeds'], key=int))}: "
        "Rank-1 / mAP in %, Market protocol.", "",
        format_markdown_table(comparisons.rows_table(record)),
        format_markdown_table(comparisons.summary_table(record).reset_index()),
        format_markdown_table(comparisons.comparisons_table(record)),
    ])  # fmt: skip


def main(argv=None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="ci", choices=sorted(config.PROFILES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("results/seeds"))
    parser.add_argument("--record", type=Path, default=None, help="the record's JSON file")
    args = parser.parse_args(argv)
    if any(seed < 0 for seed in args.seeds):
        parser.error(f"--seeds must be >= 0; got {args.seeds}")
    per_seed, baselines = {}, {}
    for seed in args.seeds:
        per_seed[seed], baselines[seed] = run_seed(args.profile, seed, args.out)
    record = comparisons.seed_record(args.profile, per_seed, baselines)
    comparisons.write_seed_record(args.record or args.out / "seeds.json", record)
    text = markdown(record)
    files.write_text_atomic(args.out / "seeds.md", text)
    print(text)
    return record


if __name__ == "__main__":
    main()
