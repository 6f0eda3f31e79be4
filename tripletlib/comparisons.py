"""The thesis' three comparisons over seeds, read paired (Tables 4.1-4.3, Section 4.2).

Table 4.1 sets ResNet-50 against MILDNet, Table 4.2 the lossless against the triplet loss, Table
4.3 online (batch-all) against offline mining. One seed draws its own synthetic dataset and trains
the four rows with that seed (`benchmarks/seeds.py`), so the rows of one seed share the data and,
per backbone, the start: each comparison is read as a paired difference, one per seed, with its
mean, its standard deviation over seeds and whether its sign is the same at every seed.

A seed record (`seed_record`, `read_seed_record`; JSON) keeps, per seed and row, the start's and
the trained Rank-1 and mAP, and the hand-crafted baseline's; every table of this module is
computed from it, never typed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tripletlib import files, runs

BASELINE = "hand-crafted (no learning)"
RECORD_VERSION = 1
# Notebooks 03-05 print the committed record of the ci profile's rows over seeds 0-2, this file
# beside them (written by `python benchmarks/seeds.py --profile ci --record book/records/...`).
BOOK_RECORD = "records/seeds_ci.json"


@dataclass(frozen=True)
class Comparison:
    """`better` minus `worse`, in the direction the thesis reports it."""

    table: str
    name: str
    better: str
    worse: str


COMPARISONS = (
    Comparison("4.1", "ResNet-50 over MILDNet", "resnet50-triplet-offline",
               "mildnet-triplet-offline"),
    Comparison("4.2", "lossless over triplet", "resnet50-lossless-offline",
               "resnet50-triplet-offline"),
    Comparison("4.3", "online (batch-all) over offline (lossless)", "resnet50-batch-all-online",
               "resnet50-lossless-offline"),
)  # fmt: skip


def row_scores(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Rank-1 and mAP of a row's start (`runs.start_state`) and of the trained row, as fractions."""
    start = metrics[runs.start_state(metrics)]
    trained = metrics["trained"]
    return {
        "start rank1": float(start["rank1"]), "start mAP": float(start["mAP"]),
        "rank1": float(trained["rank1"]), "mAP": float(trained["mAP"]),
    }  # fmt: skip


def seed_record(
    profile: str, per_seed: Mapping[int, Mapping[str, Mapping[str, Any]]],
    baselines: Mapping[int, Mapping[str, Any]],
) -> dict[str, Any]:
    """The record of one profile's rows over seeds: `per_seed[seed][row]` is a row's metrics.json
    (`runs.RunMetrics`), `baselines[seed]` the baseline's metrics on that seed's split."""
    if not per_seed:
        raise ValueError("a seed record needs at least one seed; got none")
    if set(per_seed) != set(baselines):
        raise ValueError(
            f"seeds of the rows {sorted(per_seed)} and of the baselines {sorted(baselines)} differ"
        )
    seeds = {}
    for seed in sorted(per_seed):
        rows = {row: row_scores(metrics) for row, metrics in per_seed[seed].items()}
        base = baselines[seed]
        rows[BASELINE] = {"rank1": float(base["rank1"]), "mAP": float(base["mAP"])}
        seeds[str(seed)] = rows
    return {"version": RECORD_VERSION, "profile": profile, "seeds": seeds}


def read_seed_record(path: str | Path) -> dict[str, Any]:
    """A seed record written by `write_seed_record`; a missing or damaged file raises one line
    naming it and how to make it again."""
    path = Path(path)
    remedy = "make it with: python benchmarks/seeds.py --profile PROFILE --record FILE"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; {remedy}")
    record = files.read_json(path, remedy)
    if not isinstance(record, dict) or record.get("version") != RECORD_VERSION or not record.get(
        "seeds"
    ):
        raise ValueError(f"{path} is not a version-{RECORD_VERSION} seed record; {remedy}")
    return record


def write_seed_record(path: str | Path, record: Mapping[str, Any]) -> Path:
    """Write `record` (from `seed_record`) atomically as JSON."""
    from tripletlib import files

    return files.write_json_atomic(path, record, indent=2)


def _seeds(record: Mapping[str, Any]) -> list[str]:
    return sorted(record["seeds"], key=int)


def _spread(values: list[float]) -> float:
    """Standard deviation over seeds (ddof 1; 0 for a single seed)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def rows_table(record: Mapping[str, Any]) -> pd.DataFrame:
    """One line per row and seed: start mAP, trained Rank-1 and mAP, what training added (%)."""
    lines = []
    for seed in _seeds(record):
        for row, scores in record["seeds"][seed].items():
            line = {"row": row, "seed": int(seed)}
            if "start mAP" in scores:
                line["start mAP"] = 100 * scores["start mAP"]
            line.update({"Rank-1": 100 * scores["rank1"], "mAP": 100 * scores["mAP"]})
            if "start mAP" in scores:
                line["added to the start"] = 100 * (scores["mAP"] - scores["start mAP"])
            lines.append(line)
    return pd.DataFrame(lines).round(1)


def paired_differences(record: Mapping[str, Any], comparison: Comparison) -> dict[str, Any]:
    """`comparison.better` minus `comparison.worse` at each seed, in mAP points: of the trained
    rows and of what each row added to its start (they differ where the rows' starts differ)."""
    seeds = _seeds(record)
    result: dict[str, Any] = {"seeds": [int(seed) for seed in seeds]}
    for key, label in (("trained", "trained mAP"), ("gain", "added to the start")):
        differences = []
        for seed in seeds:
            rows = record["seeds"][seed]
            missing = [row for row in (comparison.better, comparison.worse) if row not in rows]
            if missing:
                raise ValueError(f"seed {seed} of the record has no row {missing[0]!r}")
            a, b = rows[comparison.better], rows[comparison.worse]
            if key == "trained":
                differences.append(100 * (a["mAP"] - b["mAP"]))
            else:
                differences.append(100 * ((a["mAP"] - a["start mAP"]) - (b["mAP"] - b["start mAP"])))
        result[label] = {
            "per seed": differences,
            "mean": float(np.mean(differences)),
            "std": _spread(differences),
            "same sign at every seed": bool(
                all(d > 0 for d in differences) or all(d < 0 for d in differences)
            ),
        }
    return result


def comparisons_table(
    record: Mapping[str, Any], tables: tuple[str, ...] = ("4.1", "4.2", "4.3")
) -> pd.DataFrame:
    """The paired differences of the comparisons of `tables` (mAP points), one line per
    comparison and measure: per-seed values, mean, standard deviation, same sign at every seed."""
    unknown = sorted(set(tables) - {c.table for c in COMPARISONS})
    if unknown:
        raise ValueError(f"unknown table(s) {unknown}; the comparisons are of 4.1, 4.2 and 4.3")
    lines = []
    for comparison in COMPARISONS:
        if comparison.table not in tables:
            continue
        paired = paired_differences(record, comparison)
        for label in ("trained mAP", "added to the start"):
            values = paired[label]
            lines.append({
                "table": comparison.table, "comparison": comparison.name, "difference of": label,
                "per seed": ", ".join(f"{d:+.1f}" for d in values["per seed"]),
                "mean": round(values["mean"], 1), "std": round(values["std"], 1),
                "same sign at every seed": values["same sign at every seed"],
            })  # fmt: skip
    return pd.DataFrame(lines)


def summary_table(record: Mapping[str, Any]) -> pd.DataFrame:
    """Per row: mean and standard deviation over seeds of the start's and the trained mAP (%)."""
    seeds = _seeds(record)
    rows = list(record["seeds"][seeds[0]])
    lines = []
    for row in rows:
        line: dict[str, Any] = {"row": row}
        for key, label in (("start mAP", "start mAP"), ("mAP", "trained mAP")):
            values = [100 * record["seeds"][s][row][key] for s in seeds if key in record["seeds"][s][row]]
            if values:
                line[f"{label} mean"] = round(float(np.mean(values)), 1)
                line[f"{label} std"] = round(_spread(values), 1)
        lines.append(line)
    return pd.DataFrame(lines).set_index("row")


def describe(record: Mapping[str, Any], table: str) -> str:
    """One sentence per measure of the comparison of `table` ("4.1", "4.2" or "4.3"): the mean
    paired difference, its standard deviation, the per-seed values and whether the sign holds."""
    matches = [c for c in COMPARISONS if c.table == table]
    if not matches:
        raise ValueError(f"unknown table {table!r}; the comparisons are of 4.1, 4.2 and 4.3")
    comparison = matches[0]
    paired = paired_differences(record, comparison)
    seeds = ", ".join(str(seed) for seed in paired["seeds"])
    lines = [f"Table {table}, {comparison.name} ({comparison.better} minus {comparison.worse}), "
             f"profile {record['profile']}, seeds {seeds}:"]  # fmt: skip
    for label in ("trained mAP", "added to the start"):
        values = paired[label]
        per_seed = ", ".join(f"{d:+.1f}" for d in values["per seed"])
        sign = "holds at every seed" if values["same sign at every seed"] else "changes between seeds"
        lines.append(
            f"  {label}: {values['mean']:+.1f} ± {values['std']:.1f} points ({per_seed}); "
            f"the sign {sign}"
        )
    return "\n".join(lines)
