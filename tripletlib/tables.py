"""The thesis' result tables (Tables 4.1-4.4, Chapter 4) beside the numbers of our own runs.

The published numbers are constants (percent, as printed in the thesis). Our numbers come from the
`metrics.json` files that `tripletlib train` writes (schema: `runs.RunMetrics`; fractions in [0, 1]).
Each of our cells says which dataset, profile and protocol produced it, taken from the metrics file:
a synthetic number is never presented as a Market-1501 number. A row that was not run reads
"not run"; no number is ever made up.

Given the metrics of the hand-crafted colour descriptor (`tripletlib.baseline`, no learning) on
the same test split, every table gets a row "hand-crafted (no learning)" with our numbers only:
the thesis has no such row, so its cells stay empty ("-").
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tripletlib.checks import is_fraction
from tripletlib.config import TABLE_METRICS, THESIS_ROWS
from tripletlib.files import read_json, write_text_atomic

NOT_RUN = "not run"
METRICS_FILE = "metrics.json"
FINAL_ROW = "resnet50-lossless-offline"  # the thesis' final model (Section 4.2.3)
BASELINE_NAME = "hand-crafted (no learning)"
RE_RANKED_SUFFIX = "+ re-ranking"  # Table 4.4's line of a row under k-reciprocal re-ranking
BASELINE_RUN = "baseline"  # the "run" column of the baseline row (tripletlib.baseline)
TRAINED_ROWS = tuple(THESIS_ROWS)  # the rows of Tables 4.1-4.3 (`config.THESIS_ROWS`)


@dataclass(frozen=True)
class ThesisResult:
    """One published result in percent; `row` is our experiment that reproduces it, if any."""

    name: str
    rank1: float | None
    mean_average_precision: float | None
    rank5: float | None = None
    year: str = "-"
    row: str | None = None


@dataclass(frozen=True)
class ThesisTable:
    """A table of Chapter 4: its number, caption, first column header and published rows."""

    number: str
    caption: str
    row_header: str
    results: tuple[ThesisResult, ...]


THESIS_TABLES: dict[str, ThesisTable] = {
    "4.1": ThesisTable(
        "4.1",
        "Evaluation metrics for systems trained with two different base architectures",
        "Base architecture",
        (
            ThesisResult("MILDNet", 79.5, 70.3, rank5=85.4, row="mildnet-triplet-offline"),
            ThesisResult("ResNet-50", 86.6, 75.9, rank5=91.2, row="resnet50-triplet-offline"),
        ),
    ),
    "4.2": ThesisTable(
        "4.2",
        "Evaluation metrics for model with two different loss functions",
        "Loss function",
        (
            ThesisResult("Triplet loss", 86.6, 75.9, rank5=91.2, row="resnet50-triplet-offline"),
            ThesisResult(
                "Lossless triplet loss", 92.1, 81.9, rank5=96.5, row="resnet50-lossless-offline"
            ),
        ),
    ),
    "4.3": ThesisTable(
        "4.3",
        "Evaluation metrics for model with two different mining approaches",
        "Mining technique",
        (
            ThesisResult("Online mining", 91.3, 79.7, rank5=95.8, row="resnet50-batch-all-online"),
            ThesisResult("Offline mining", 92.1, 81.9, rank5=96.5, row="resnet50-lossless-offline"),
        ),
    ),
    "4.4": ThesisTable(
        "4.4",
        "State-of-the-art comparison to the thesis work",
        "Method",
        (
            ThesisResult("SGGNN [56]", 92.3, 82.2, year="2018"),
            ThesisResult("Aligned Re-Id [57]", 91.8, 79.3, year="2017"),
            ThesisResult("OSNet [58]", 94.0, 83.4, year="2019"),
            ThesisResult("AANet [10]", 93.7, 82.9, year="2019"),
            ThesisResult("Thesis work", 92.1, 81.9, row=FINAL_ROW),
        ),
    ),
}


def validate_run_metrics(metrics: Any, source: str) -> dict[str, Any]:
    """Check one run's metrics against the `metrics.json` schema (`runs.RunMetrics.validate`);
    `source` names it in errors."""
    from tripletlib.runs import RunMetrics

    return RunMetrics.validate(metrics, source)


def validate_baseline_metrics(baseline: Any) -> dict[str, Any]:
    """Check the baseline's metrics: Rank-1, Rank-5 and mAP fractions (as
    `baseline.evaluate_baseline` returns them) plus the ``dataset`` they were measured on;
    ``profile`` and ``protocol`` are optional (default "-" and "market")."""
    if not isinstance(baseline, Mapping):
        raise ValueError(f"baseline: expected a dict of metrics, got {type(baseline).__name__}")
    missing = [key for key in (*TABLE_METRICS, "dataset") if key not in baseline]
    if missing:
        raise ValueError(
            f"baseline: missing key(s) {missing}; it needs {[*TABLE_METRICS, 'dataset']} "
            "(add the dataset to what baseline.evaluate_baseline returns)"
        )
    for key in TABLE_METRICS:
        if not is_fraction(baseline[key]):
            raise ValueError(
                f"baseline[{key!r}] must be a fraction in [0, 1], got {baseline[key]!r}"
            )
    checked = {"profile": "-", "protocol": "market", **baseline}
    for key in ("dataset", "profile", "protocol"):
        if not isinstance(checked[key], str) or not checked[key].strip():
            raise ValueError(f"baseline[{key!r}] must be a non-empty string, got {checked[key]!r}")
    return checked


def _metrics_files(path: Path) -> list[Path]:
    if not path.exists():
        raise ValueError(
            f"{path}: no such file or directory (expected {METRICS_FILE} or a run folder)"
        )
    if path.is_file():
        return [path]
    files = sorted(path.rglob(METRICS_FILE))
    if not files:
        raise ValueError(f"{path}: no {METRICS_FILE} in this folder or below")
    return files


def load_run_metrics(paths_or_dirs: str | Path | Iterable[str | Path]) -> list[dict[str, Any]]:
    """Read and validate `metrics.json` files: files, run folders or folders of run folders.

    Each dict is the file's content plus ``metrics_path``. Missing keys raise `ValueError`
    naming the file.
    """
    if isinstance(paths_or_dirs, str | Path):
        paths_or_dirs = [paths_or_dirs]
    files: list[Path] = []
    for path in paths_or_dirs:
        for file in _metrics_files(Path(path)):
            if file.resolve() not in {seen.resolve() for seen in files}:
                files.append(file)
    runs = []
    for file in files:
        content = read_json(file, "train that row again (`tripletlib train` with --restart)")
        run = validate_run_metrics(content, str(file))
        run["metrics_path"] = str(file)
        runs.append(run)
    return runs


def dataset_name(dataset: str) -> str:
    """Display name of a metrics file's dataset: "Market-1501" only for Market-1501 spellings."""
    compact = dataset.strip().lower().replace("-", "").replace("_", "").replace(" ", "")
    if compact == "market1501":
        return "Market-1501"
    return dataset.strip()


def _percent(fraction: float) -> float:
    """A fraction as a percentage with one decimal (0.8665 -> 86.7)."""
    return round(100.0 * fraction, 1)


def table_runs(runs: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The runs of rows the thesis tables have a line for (`TRAINED_ROWS`); a book's other rows
    (notebook 05's batch-hard one) are left out without the warning `build_thesis_tables` gives."""
    return [run for run in runs if run["row"] in TRAINED_ROWS]


def _runs_by_row(runs: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    by_row: dict[str, dict[str, Any]] = {}
    for index, run in enumerate(runs):
        source = f"runs[{index}]"
        if isinstance(run, Mapping) and "metrics_path" in run:
            source = str(run["metrics_path"])
        run = validate_run_metrics(run, source)
        row = run["row"]
        if row in by_row:
            first = by_row[row].get("metrics_path", "an earlier run")
            raise ValueError(f"two runs for row {row!r}: {first} and {source}; pass only one")
        by_row[row] = run
    unknown = sorted(set(by_row) - set(TRAINED_ROWS))
    if unknown:
        warnings.warn(f"runs {unknown} are not rows of the thesis tables; left out", stacklevel=3)
    return by_row


def _our_cells(run: Mapping[str, Any] | None) -> dict[str, Any]:
    if run is None:
        return dict.fromkeys(
            ("start_rank1", "start_mAP", "rank1", "rank5", "mAP", "dataset", "profile", "protocol"),
            NOT_RUN,
        )
    return {**_start_cells(run), **_cells(run["trained"], run)}


def _start_cells(run: Mapping[str, Any]) -> dict[str, Any]:
    """The row's start alone, before its triplet training: "pretrained" (the label-free start)
    where it had one, else "untrained" (random weights, or the thesis' ImageNet weights)."""
    start = run.get("pretrained") or run.get("untrained")
    if not isinstance(start, Mapping) or not all(is_fraction(start.get(k)) for k in ("rank1", "mAP")):
        return {"start_rank1": None, "start_mAP": None}
    return {"start_rank1": _percent(start["rank1"]), "start_mAP": _percent(start["mAP"])}


def _cells(trained: Mapping[str, Any], run: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "rank1": _percent(trained["rank1"]),
        "rank5": _percent(trained["rank5"]),
        "mAP": _percent(trained["mAP"]),
        "dataset": dataset_name(run["dataset"]),
        "profile": run["profile"],
        "protocol": run["protocol"],
    }


def _side_by_side(
    table: ThesisTable,
    by_row: Mapping[str, Mapping[str, Any]],
    baseline: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Tables 4.1-4.3: each published row beside our run of the same experiment."""
    records = []
    rows = [(result, _our_cells(by_row.get(result.row))) for result in table.results]
    if baseline is not None:
        cells = {"start_rank1": None, "start_mAP": None, **_cells(baseline, baseline)}
        rows.append((ThesisResult(BASELINE_NAME, None, None, row=BASELINE_RUN), cells))
    for result, ours in rows:
        records.append(
            {
                table.row_header: result.name,
                "Rank-1 thesis": result.rank1,
                "Rank-5 thesis": result.rank5,
                "mAP thesis": result.mean_average_precision,
                "Rank-1 start": ours["start_rank1"],
                "mAP start": ours["start_mAP"],
                "Rank-1 this run": ours["rank1"],
                "Rank-5 this run": ours["rank5"],
                "mAP this run": ours["mAP"],
                "run": result.row,
                "dataset": ours["dataset"],
                "profile": ours["profile"],
                "protocol": ours["protocol"],
            }
        )
    return pd.DataFrame.from_records(records)


def validate_re_ranked(
    re_ranked: Any, by_row: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Check re-ranked metrics by row: Rank-1, Rank-5 and mAP fractions (as
    `runs.stored_re_ranked` or `EvaluationResult.to_dict` give them) of a row with a run."""
    if not isinstance(re_ranked, Mapping):
        raise ValueError(f"re_ranked: expected a dict row -> metrics, got {type(re_ranked).__name__}")
    checked = {}
    for row, metrics in re_ranked.items():
        if row not in by_row:
            raise ValueError(
                f"re_ranked[{row!r}]: no run of that row was given; re-ranked metrics need the "
                f"row's own run (given: {sorted(by_row)})"
            )
        if not isinstance(metrics, Mapping):
            raise ValueError(f"re_ranked[{row!r}]: expected a dict of metrics, got {metrics!r}")
        for key in TABLE_METRICS:
            if not is_fraction(metrics.get(key)):
                raise ValueError(
                    f"re_ranked[{row!r}][{key!r}] must be a fraction in [0, 1], got "
                    f"{metrics.get(key)!r}"
                )
        checked[row] = dict(metrics)
    return checked


def _state_of_the_art(
    table: ThesisTable,
    by_row: Mapping[str, Mapping[str, Any]],
    baseline: Mapping[str, Any] | None = None,
    re_ranked: Mapping[str, Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """Table 4.4 (Section 4.2.4): the literature and the thesis, plus our run of the thesis'
    final model, and a line "+ re-ranking" for each row with re-ranked metrics."""
    records = []
    for result in table.results:
        records.append(
            {
                table.row_header: result.name,
                "Year": result.year,
                "Rank-1 (%)": result.rank1,
                "mAP (%)": result.mean_average_precision,
                "mAP start (%)": None,
                "source": "thesis" if result.row else "published",
                "dataset": "Market-1501",
                "profile": "-",
                "protocol": "-",
            }
        )
    ours_by_name = [(f"This run ({FINAL_ROW})", _our_cells(by_row.get(FINAL_ROW)))]
    for row, metrics in (re_ranked or {}).items():
        cells = {"start_rank1": None, "start_mAP": None, **_cells(metrics, by_row[row])}
        ours_by_name.append((f"This run ({row}) {RE_RANKED_SUFFIX}", cells))
    if baseline is not None:
        cells = {"start_rank1": None, "start_mAP": None, **_cells(baseline, baseline)}
        ours_by_name.append((f"This run ({BASELINE_NAME})", cells))
    for name, ours in ours_by_name:
        records.append(
            {
                table.row_header: name,
                "Year": "-",
                "Rank-1 (%)": ours["rank1"],
                "mAP (%)": ours["mAP"],
                "mAP start (%)": ours["start_mAP"],
                "source": "this run",
                "dataset": ours["dataset"],
                "profile": ours["profile"],
                "protocol": ours["protocol"],
            }
        )
    return pd.DataFrame.from_records(records)


def build_thesis_tables(
    runs: Iterable[Mapping[str, Any]],
    baseline: Mapping[str, Any] | None = None,
    re_ranked: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, pd.DataFrame]:
    """Tables "4.1".."4.4": the thesis' numbers (Chapter 4) beside this project's runs.

    `runs` are dicts as `load_run_metrics` returns them (at most one per row). Our metrics are
    percentages with one decimal, the row's start alone ("start") beside its trained score; a row without a run reads "not run". With `baseline` (the
    hand-crafted descriptor's metrics and dataset, see `validate_baseline_metrics`) each table
    ends with a row "hand-crafted (no learning)" whose thesis cells are empty. Each frame's
    ``attrs["caption"]`` holds the thesis caption. `re_ranked` maps a row with a run to its
    metrics under k-reciprocal re-ranking (`validate_re_ranked`): Table 4.4 gets a line
    "This run (<row>) + re-ranking" for each.
    """
    by_row = _runs_by_row(runs)
    if baseline is not None:
        baseline = validate_baseline_metrics(baseline)
    re_ranked = validate_re_ranked(re_ranked or {}, by_row)
    tables = {}
    for number, table in THESIS_TABLES.items():
        if number == "4.4":
            frame = _state_of_the_art(table, by_row, baseline, re_ranked)
        else:
            frame = _side_by_side(table, by_row, baseline)
        frame.attrs["caption"] = f"Table {number}: {table.caption}"
        tables[number] = frame
    return tables


def _markdown_cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value).replace("|", "\\|")


def format_markdown_table(frame: pd.DataFrame) -> str:
    """A DataFrame as a GitHub Markdown table; floats with one decimal, missing cells as "-"."""
    header = "| " + " | ".join(_markdown_cell(column) for column in frame.columns) + " |"
    separator = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = [
        "| " + " | ".join(_markdown_cell(value) for value in record) + " |"
        for record in frame.itertuples(index=False, name=None)
    ]
    return "\n".join([header, separator, *rows]) + "\n"


def _notes(frame: pd.DataFrame) -> list[str]:
    notes = ["Thesis and published numbers: Market-1501, as printed in the thesis (Chapter 4)."]
    datasets = {str(name) for name in frame["dataset"]}
    if any("synthetic" in name.lower() for name in datasets):
        notes.append(
            "Rows with dataset 'synthetic' were measured on synthetic Market-shaped data: they are "
            "not Market-1501 numbers and not comparable with the thesis."
        )
    if any("start" in str(column) for column in frame.columns):
        notes.append(
            "'start': our row's network before its triplet training, the start alone (the CPU "
            "profiles' label-free start in ImageNet's role, random weights where a profile has "
            "none); what the training added is 'this run' minus 'start'."
        )
    if frame.iloc[:, 0].astype(str).str.contains(RE_RANKED_SUFFIX, regex=False).any():
        notes.append(
            f"'{RE_RANKED_SUFFIX}': the same row's embeddings ranked by k-reciprocal re-ranking "
            "(Zhong et al., CVPR 2017; k1=20, k2=6, lambda=0.3; tripletlib.reranking); the thesis "
            "does not re-rank."
        )
    if NOT_RUN in datasets:
        notes.append(f"'{NOT_RUN}': no metrics.json was given for that experiment row.")
    if frame.iloc[:, 0].astype(str).str.contains(BASELINE_NAME, regex=False).any():
        notes.append(
            f"'{BASELINE_NAME}': colour histograms of horizontal stripes after grey-world "
            "normalisation (tripletlib.baseline), nothing trained, on the same test split as our "
            "rows; the thesis has no such row."
        )
    return notes


def write_thesis_tables(
    runs: Iterable[Mapping[str, Any]],
    out_dir: str | Path,
    baseline: Mapping[str, Any] | None = None,
    re_ranked: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Path]:
    """Write ``table_4_1.md``/``.csv`` .. ``table_4_4.md``/``.csv``; returns file name -> path.

    `baseline` and `re_ranked`: as in `build_thesis_tables`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for number, frame in build_thesis_tables(runs, baseline, re_ranked).items():
        stem = "table_" + number.replace(".", "_")
        markdown = out_dir / f"{stem}.md"
        text = f"**{frame.attrs['caption']}** (thesis beside this run)\n\n"
        text += (
            format_markdown_table(frame) + "\n" + "\n".join(f"- {note}" for note in _notes(frame))
        )
        write_text_atomic(markdown, text + "\n")
        csv = out_dir / f"{stem}.csv"
        write_text_atomic(csv, frame.to_csv(index=False))
        written[markdown.name] = markdown
        written[csv.name] = csv
    return written
