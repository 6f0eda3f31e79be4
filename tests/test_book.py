"""The papermill batch on the ci profile: every notebook runs, tables and figures are written, and
every trained row clearly beats its untrained (random) network: the training issue's "it learns".
The ci profile's training is a warm start (identity classification) followed by the thesis' triplet
training; docs/benchmarks.md has the ratios measured over seeds, from which MIN_MAP_RATIO is set
with room. Writes into results/ci, the folder the committed notebooks use, so that nbval afterwards
finds the trained rows instead of training them again."""

import json
from pathlib import Path

import pytest

from tripletlib import config, pretraining
from tripletlib.book import list_notebooks, run_book
from tripletlib.runs import RunMetrics

REPO = Path(__file__).resolve().parent.parent
BOOK = REPO / "book"
RESULTS = REPO / "results" / "ci"
# Trained over untrained test mAP that every ci row must reach. With the shipped warm starts
# (docs/benchmarks.md, "Learning on 2 CPU cores") the ci rows measured 7x (MILDNet) to 16x
# (ResNet-50) at seed 0; the bar, kept from the earlier profiles, leaves wide room.
MIN_MAP_RATIO = 1.3


def test_notebooks_are_numbered_and_have_a_parameters_cell():
    import nbformat

    notebooks = list_notebooks(BOOK)
    assert [nb.name[:2] for nb in notebooks] == [f"{i:02d}" for i in range(len(notebooks))]
    for path in notebooks:
        notebook = nbformat.read(path, as_version=4)
        tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: expected one cell tagged 'parameters'"
        for name in ("PROFILE", "DATA_ROOT", "OUTPUT_DIR", "SEED"):
            assert name in tagged[0].source, f"{path.name}: parameters cell lacks {name}"


def test_only_filter_rejects_unknown_prefix():
    with pytest.raises(ValueError, match="no notebook"):
        list_notebooks(BOOK, only=["99"])


@pytest.mark.slow
def test_ci_book_batch_writes_tables_figures_and_trained_rows():
    result = run_book(profile="ci", out_dir=RESULTS, book_dir=BOOK, progress=True, cell_timeout=900)

    executed = sorted(p.name for p in (RESULTS / "notebooks").glob("*.ipynb"))
    assert executed == [p.name for p in list_notebooks(BOOK)]
    for table in ("4_1", "4_2", "4_3", "4_4"):
        for suffix in ("md", "csv"):
            assert (RESULTS / "tables" / f"table_{table}.{suffix}").is_file()
    assert len(list((RESULTS / "figures").glob("*.png"))) >= 10
    assert result.seconds and all(seconds > 0 for seconds in result.seconds.values())

    for row in config.THESIS_ROWS:
        metrics = RunMetrics.read(RESULTS / "runs" / row)
        assert metrics.dataset == "synthetic" and metrics.profile == "ci"
        trained, untrained = metrics.trained["mAP"], metrics.untrained["mAP"]
        assert metrics.trained_beats_untrained(MIN_MAP_RATIO), (
            f"{row}: mAP {untrained:.3f} -> {trained:.3f}"
        )
        assert metrics.pretraining["steps"] == pretraining.warm_start_steps(row.split("-")[0]), row
    # Issue 14's bar: every row must beat the hand-crafted colour descriptor (no learning) on the
    # same split, by 1.5x its mAP. Measured at seed 0 with the five-stage shipped warm starts
    # (docs/benchmarks.md, "Learning on 2 CPU cores"): baseline mAP 0.496; MILDNet 0.849 (1.71x),
    # the ResNet-50 rows 0.934-0.936 (1.88-1.89x).
    baseline = json.loads((RESULTS / "baseline.json").read_text())
    for row in config.THESIS_ROWS:
        trained = RunMetrics.read(RESULTS / "runs" / row).trained["mAP"]
        assert trained > baseline["mAP"], f"{row}: mAP {trained:.3f}, baseline {baseline['mAP']:.3f}"
        assert trained >= 1.5 * baseline["mAP"], (
            f"{row}: mAP {trained:.3f} < 1.5 x baseline {baseline['mAP']:.3f}"
        )
    table_41 = (RESULTS / "tables" / "table_4_1.md").read_text()
    assert "hand-crafted (no learning)" in table_41
    assert "synthetic" in table_41.lower() and "79.5" in table_41

    records = {p.stem: json.loads(p.read_text()) for p in (RESULTS / "records").glob("*.json")}
    assert records["04_losses"]["from_scratch_matches_library"] is True
    assert records["06_evaluation"]["annoy_recall_at_10"] > 0.5
