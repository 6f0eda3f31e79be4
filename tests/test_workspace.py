"""Workspace.results_table and learning_report: the untrained / start / trained columns and the
gain over the start that the notebooks show."""

from __future__ import annotations

import json

import pytest

from tripletlib.workspace import Workspace


def write_metrics(workspace: Workspace, row: str, **states) -> None:
    folder = workspace.run_dir(row)
    folder.mkdir(parents=True)
    metrics = {"row": row, "dataset": "synthetic", "profile": "ci", "train_seconds": 90.0}
    for state, (rank1, mean_ap) in states.items():
        metrics[state] = {"rank1": rank1, "rank5": rank1 + 0.1, "mAP": mean_ap}
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_results_table_shows_the_start_only_where_there_is_one(tmp_path):
    workspace = Workspace("ci", output_dir=tmp_path)
    write_metrics(workspace, "a", untrained=(0.01, 0.02), pretrained=(0.05, 0.06), trained=(0.2, 0.1))
    write_metrics(workspace, "b", untrained=(0.01, 0.02), trained=(0.3, 0.2))
    table = workspace.results_table(["a", "b"])
    assert list(table.index) == ["a", "b"]
    assert table.loc["a", "start mAP"] == pytest.approx(6.0)
    assert table.loc["a", "trained rank5"] == pytest.approx(30.0)
    assert table.loc["b", "trained mAP"] == pytest.approx(20.0)
    assert table["start mAP"].isna().tolist() == [False, True]
    # the gain is over the start where there is one, over random weights where there is none
    assert table["gain mAP"].tolist() == pytest.approx([4.0, 18.0])
    assert table.loc["a", "train minutes"] == pytest.approx(1.5)


def test_results_table_names_a_row_that_was_not_trained(tmp_path):
    with pytest.raises(FileNotFoundError, match="train the row 'missing'"):
        Workspace("ci", output_dir=tmp_path).results_table(["missing"])


def test_learning_report_compares_trained_with_the_start(tmp_path):
    workspace = Workspace("ci", output_dir=tmp_path)
    write_metrics(workspace, "a", untrained=(0.01, 0.02), pretrained=(0.01, 0.03), trained=(0.5, 0.4))
    write_metrics(workspace, "b", untrained=(0.01, 0.05), trained=(0.02, 0.04))
    assert workspace.learning_report(["a", "b"]) == (
        "a: mAP 3.0 (start alone) -> 40.0 trained, +37.0 points; at least +0.0: True\n"
        "b: mAP 5.0 (random weights) -> 4.0 trained, -1.0 points; at least +0.0: False"
    )
    assert workspace.learning_report(["a"], min_gain=38.0).endswith("at least +38.0: False")


def test_a_row_of_an_older_recipe_is_trained_again_but_another_setup_is_left_alone(tmp_path):
    workspace, row = Workspace("ci", output_dir=tmp_path), "resnet50-triplet-offline"
    data_root = tmp_path / "data"
    data_root.mkdir()
    assert not workspace._older_recipe(row, data_root)  # nothing there yet
    run = workspace.run_dir(row)
    run.mkdir(parents=True)
    older = {"profile": {"name": "ci", "learning_rate": 3e-4}, "seed": 0,
             "data_root": str(data_root.resolve()), "warm_start": "an older one"}  # fmt: skip
    (run / "config.json").write_text(json.dumps(older))
    assert workspace._older_recipe(row, data_root)
    for change in ({"seed": 1}, {"profile": {"name": "cpu"}}, {"data_root": "/elsewhere"}):
        (run / "config.json").write_text(json.dumps({**older, **change}))
        assert not workspace._older_recipe(row, data_root), change
    (run / "config.json").write_text("not json")
    assert not workspace._older_recipe(row, data_root)


def test_stored_re_ranked_metrics_reach_table_4_4(tmp_path):
    """What `tripletlib evaluate --re-rank` (or `Workspace.re_ranked`) stored in a run folder is
    the "+ re-ranking" line of Table 4.4 (`Workspace.thesis_tables`, the book's tables)."""
    from tripletlib import runs, tables

    row, data_root = "resnet50-lossless-offline", tmp_path / "data"
    data_root.mkdir()
    run_dir = tmp_path / "runs" / row
    run_dir.mkdir(parents=True)
    trained = {"rank1": 0.4, "rank5": 0.6, "mAP": 0.3}
    metrics = {"row": row, "backbone": "resnet50", "loss": "lossless", "mining": "offline",
               "profile": "ci", "dataset": "synthetic", "data_root": str(data_root),
               "protocol": "market", "seed": 0, "trained": trained, "untrained": trained,
               "train_seconds": 60.0, "images_per_second": 100.0}  # fmt: skip
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    loaded = tables.load_run_metrics(run_dir)
    assert runs.re_ranked_by_row(loaded) == {}
    re_ranked = {"rank1": 0.5, "rank5": 0.7, "mAP": 0.42, "k1": 20, "k2": 6, "lambda_value": 0.3}
    runs.save_evaluation(run_dir, {**trained, "search": "exact", "protocol": "market",
                                   "data_root": str(data_root), "re_ranked": re_ranked})  # fmt: skip
    found = runs.re_ranked_by_row(loaded)
    assert found == {row: re_ranked}
    assert runs.re_ranked_by_row(loaded, tmp_path / "another-dataset") == {}
    table = tables.build_thesis_tables(loaded, re_ranked=found)["4.4"]
    line = table[table["Method"] == f"This run ({row}) + re-ranking"].iloc[0]
    assert (line["Rank-1 (%)"], line["mAP (%)"]) == (50.0, 42.0)
