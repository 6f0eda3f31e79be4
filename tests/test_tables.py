"""Tests for tripletlib.tables: thesis constants, metrics.json loading, the four tables, files."""

import json

import pandas as pd
import pytest

from tripletlib import tables


def make_run(row, rank1, rank5, mean_average_precision, dataset="synthetic", profile="ci"):
    backbone, loss, mining = row.split("-", 2) if row.count("-") == 2 else ("resnet50", "x", "y")
    return {
        "row": row,
        "backbone": backbone,
        "loss": loss,
        "mining": mining,
        "profile": profile,
        "dataset": dataset,
        "data_root": "/data/somewhere",
        "protocol": "market",
        "seed": 0,
        "trained": {"rank1": rank1, "rank5": rank5, "mAP": mean_average_precision, "cmc": []},
        "untrained": {"rank1": 0.01, "rank5": 0.05, "mAP": 0.02, "cmc": []},
        "train_seconds": 60.0,
        "images_per_second": 100.0,
    }


def write_metrics(folder, run):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "metrics.json"
    path.write_text(json.dumps(run))
    return path


def row_of(frame, column, name):
    matching = frame[frame[column] == name]
    assert len(matching) == 1, f"{name!r} appears {len(matching)} times in {column!r}"
    return matching.iloc[0]


def test_thesis_constants_match_the_printed_tables():
    table_41 = tables.THESIS_TABLES["4.1"].results
    assert [(r.name, r.rank1, r.rank5, r.mean_average_precision) for r in table_41] == [
        ("MILDNet", 79.5, 85.4, 70.3),
        ("ResNet-50", 86.6, 91.2, 75.9),
    ]
    table_43 = {
        r.name: (r.rank1, r.rank5, r.mean_average_precision, r.row)
        for r in tables.THESIS_TABLES["4.3"].results
    }
    assert table_43["Online mining"] == (91.3, 95.8, 79.7, "resnet50-batch-all-online")
    assert table_43["Offline mining"] == (92.1, 96.5, 81.9, "resnet50-lossless-offline")
    table_44 = {
        r.name: (r.year, r.rank1, r.mean_average_precision)
        for r in tables.THESIS_TABLES["4.4"].results
    }
    assert table_44["OSNet [58]"] == ("2019", 94.0, 83.4)
    assert table_44["SGGNN [56]"] == ("2018", 92.3, 82.2)
    assert table_44["Thesis work"] == ("-", 92.1, 81.9)
    # every table row that a run reproduces is one of the four trained rows
    reproduced = {r.row for t in tables.THESIS_TABLES.values() for r in t.results if r.row}
    assert reproduced == set(tables.TRAINED_ROWS)


def test_numbers_land_in_the_right_cells_as_percent_with_one_decimal():
    runs = [
        make_run("mildnet-triplet-offline", 0.41234, 0.70, 0.30),
        make_run("resnet50-triplet-offline", 0.5, 0.75, 0.3333),
        make_run(
            "resnet50-lossless-offline", 0.9871, 0.999, 0.8149, dataset="market1501", profile="full"
        ),
    ]
    built = tables.build_thesis_tables(runs)
    assert sorted(built) == ["4.1", "4.2", "4.3", "4.4"]

    mildnet = row_of(built["4.1"], "Base architecture", "MILDNet")
    assert (mildnet["Rank-1 thesis"], mildnet["Rank-5 thesis"], mildnet["mAP thesis"]) == (
        79.5,
        85.4,
        70.3,
    )
    assert (mildnet["Rank-1 this run"], mildnet["Rank-5 this run"], mildnet["mAP this run"]) == (
        41.2,
        70.0,
        30.0,
    )
    assert mildnet["run"] == "mildnet-triplet-offline"

    lossless = row_of(built["4.2"], "Loss function", "Lossless triplet loss")
    assert (lossless["Rank-1 this run"], lossless["Rank-5 this run"], lossless["mAP this run"]) == (
        98.7,
        99.9,
        81.5,
    )
    assert (lossless["dataset"], lossless["profile"], lossless["protocol"]) == (
        "Market-1501",
        "full",
        "market",
    )
    # the same run (the final model) also fills the offline-mining row of Table 4.3
    offline = row_of(built["4.3"], "Mining technique", "Offline mining")
    assert offline["Rank-1 this run"] == 98.7

    ours = row_of(built["4.4"], "Method", "This run (resnet50-lossless-offline)")
    assert (ours["Rank-1 (%)"], ours["mAP (%)"], ours["source"]) == (98.7, 81.5, "this run")
    assert built["4.4"].attrs["caption"].startswith("Table 4.4:")


def test_every_row_prints_its_start_alone_beside_its_trained_score():
    with_start = make_run("resnet50-triplet-offline", 0.5, 0.6, 0.4)
    with_start["pretrained"] = {"rank1": 0.012, "rank5": 0.05, "mAP": 0.034}
    from_random = make_run("mildnet-triplet-offline", 0.3, 0.5, 0.2)
    built = tables.build_thesis_tables(
        [with_start, from_random],
        baseline={"rank1": 0.5, "rank5": 0.7, "mAP": 0.36, "dataset": "synthetic"},
    )
    resnet = row_of(built["4.1"], "Base architecture", "ResNet-50")
    assert (resnet["Rank-1 start"], resnet["mAP start"], resnet["mAP this run"]) == (1.2, 3.4, 40.0)
    mildnet = row_of(built["4.1"], "Base architecture", "MILDNet")  # no start: random weights
    assert (mildnet["Rank-1 start"], mildnet["mAP start"]) == (1.0, 2.0)
    assert pd.isna(row_of(built["4.1"], "Base architecture", tables.BASELINE_NAME)["mAP start"])
    final = {**with_start, "row": "resnet50-lossless-offline", "loss": "lossless"}
    table_44 = tables.build_thesis_tables([final])["4.4"]
    assert row_of(table_44, "Method", "This run (resnet50-lossless-offline)")["mAP start (%)"] == 3.4
    assert pd.isna(row_of(table_44, "Method", "OSNet [58]")["mAP start (%)"])
    assert "'start'" in "\n".join(tables._notes(built["4.1"]))


def test_missing_runs_read_not_run_and_are_never_dropped():
    built = tables.build_thesis_tables([make_run("resnet50-triplet-offline", 0.5, 0.6, 0.4)])
    table = built["4.1"]
    assert len(table) == 2  # both thesis rows are kept
    mildnet = row_of(table, "Base architecture", "MILDNet")
    for column in (
        "Rank-1 this run",
        "Rank-5 this run",
        "mAP this run",
        "dataset",
        "profile",
        "protocol",
    ):
        assert mildnet[column] == tables.NOT_RUN
    assert mildnet["Rank-1 thesis"] == 79.5  # the published number is still there
    online = row_of(built["4.3"], "Mining technique", "Online mining")
    assert online["Rank-1 this run"] == tables.NOT_RUN
    table_44 = built["4.4"]
    assert len(table_44) == 6  # four papers, the thesis, and our (missing) final model
    assert (
        row_of(table_44, "Method", "This run (resnet50-lossless-offline)")["Rank-1 (%)"]
        == tables.NOT_RUN
    )
    # no runs at all: every "this run" cell says so
    empty = tables.build_thesis_tables([])
    assert (empty["4.2"]["mAP this run"] == tables.NOT_RUN).all()


def test_dataset_column_comes_from_the_metrics_file():
    runs = [
        make_run("mildnet-triplet-offline", 0.9, 0.95, 0.8, dataset="synthetic"),
        make_run("resnet50-triplet-offline", 0.9, 0.95, 0.8, dataset="Market-1501"),
        # the synthetic generator's "market" preset is still synthetic, never Market-1501
        make_run("resnet50-batch-all-online", 0.9, 0.95, 0.8, dataset="market"),
    ]
    built = tables.build_thesis_tables(runs)
    assert row_of(built["4.1"], "Base architecture", "MILDNet")["dataset"] == "synthetic"
    assert row_of(built["4.1"], "Base architecture", "ResNet-50")["dataset"] == "Market-1501"
    assert row_of(built["4.3"], "Mining technique", "Online mining")["dataset"] == "market"
    published = built["4.4"][built["4.4"]["source"] != "this run"]
    assert (published["dataset"] == "Market-1501").all()


def test_duplicate_rows_are_rejected_and_unknown_rows_warned_about():
    run = make_run("resnet50-triplet-offline", 0.5, 0.6, 0.4)
    with pytest.raises(ValueError, match="two runs for row 'resnet50-triplet-offline'"):
        tables.build_thesis_tables([run, dict(run)])
    with pytest.warns(UserWarning, match="ablation-row"):
        tables.build_thesis_tables([make_run("ablation-row", 0.5, 0.6, 0.4)])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda run: run.pop("dataset"), r"missing key\(s\) \['dataset'\]"),
        (lambda run: run["trained"].pop("mAP"), r"'trained' is missing key\(s\) \['mAP'\]"),
        (lambda run: run["trained"].update(rank1=86.6), r"trained\['rank1'\] must be a fraction"),
        (lambda run: run.update(row=""), "'row' must be a non-empty string"),
    ],
)
def test_load_run_metrics_rejects_bad_files_naming_them(tmp_path, change, message):
    run = make_run("resnet50-triplet-offline", 0.5, 0.6, 0.4)
    change(run)
    path = write_metrics(tmp_path / "run", run)
    with pytest.raises(ValueError, match=message) as caught:
        tables.load_run_metrics(path)
    assert str(path) in str(caught.value)


def test_load_run_metrics_reads_files_and_folders(tmp_path):
    first = write_metrics(
        tmp_path / "results" / "a", make_run("mildnet-triplet-offline", 0.1, 0.2, 0.3)
    )
    second = write_metrics(
        tmp_path / "results" / "b", make_run("resnet50-triplet-offline", 0.4, 0.5, 0.6)
    )
    from_folder = tables.load_run_metrics(tmp_path / "results")
    assert [run["row"] for run in from_folder] == [
        "mildnet-triplet-offline",
        "resnet50-triplet-offline",
    ]
    assert from_folder[0]["metrics_path"] == str(first)
    assert from_folder[1]["trained"]["mAP"] == 0.6
    # a file named twice (directly and through its folder) is read once
    mixed = tables.load_run_metrics([second, tmp_path / "results" / "b", str(first)])
    assert [run["row"] for run in mixed] == ["resnet50-triplet-offline", "mildnet-triplet-offline"]

    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "metrics.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.metrics.json is damaged"):
        tables.load_run_metrics(tmp_path / "broken")
    with pytest.raises(ValueError, match="no such file or directory"):
        tables.load_run_metrics(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no metrics.json in this folder"):
        tables.load_run_metrics(tmp_path / "empty")


def test_markdown_formatter_is_plain_and_escapes_pipes():
    frame = pd.DataFrame(
        {
            "name": ["a|b", "c"],
            "value": [86.64, "not run"],
            "count": pd.Series([None, 3], dtype=object),  # ints stay ints, None reads "-"
        }
    )
    assert tables.format_markdown_table(frame) == (
        "| name | value | count |\n|---|---|---|\n| a\\|b | 86.6 | - |\n| c | not run | 3 |\n"
    )


def test_write_thesis_tables_writes_markdown_and_csv(tmp_path):
    runs = [make_run("resnet50-lossless-offline", 0.412, 0.7, 0.3)]
    written = tables.write_thesis_tables(runs, tmp_path / "tables")
    expected = {f"table_4_{n}.{suffix}" for n in range(1, 5) for suffix in ("md", "csv")}
    assert set(written) == expected
    assert all(path.is_file() and path.parent == tmp_path / "tables" for path in written.values())

    markdown = written["table_4_2.md"].read_text()
    assert markdown.startswith(
        "**Table 4.2: Evaluation metrics for model with two different loss functions**"
    )
    assert (
        "| Lossless triplet loss | 92.1 | 96.5 | 81.9 | 1.0 | 2.0 | 41.2 | 70.0 | 30.0 | resnet50-lossless-offline | synthetic | ci | market |"
        in markdown
    )
    assert "not Market-1501 numbers" in markdown
    assert "'not run'" in markdown

    csv = pd.read_csv(written["table_4_4.csv"])
    ours = row_of(csv, "Method", "This run (resnet50-lossless-offline)")
    assert (float(ours["Rank-1 (%)"]), ours["dataset"]) == (41.2, "synthetic")
    assert list(csv["Method"][:5]) == [
        "SGGNN [56]",
        "Aligned Re-Id [57]",
        "OSNet [58]",
        "AANet [10]",
        "Thesis work",
    ]


def make_baseline(rank1=0.629, rank5=0.797, mean_average_precision=0.496, **labels):
    metrics = {"rank1": rank1, "rank5": rank5, "mAP": mean_average_precision, "cmc": [0.6]}
    metrics.update({"dataset": "synthetic", "profile": "ci", **labels})
    return metrics


def test_the_baseline_row_ends_every_table_with_empty_thesis_cells():
    runs = [make_run("resnet50-lossless-offline", 0.412, 0.7, 0.3)]
    built = tables.build_thesis_tables(runs, baseline=make_baseline())
    for number, header in (("4.1", "Base architecture"), ("4.2", "Loss function"),
                           ("4.3", "Mining technique")):  # fmt: skip
        table = built[number]
        assert len(table) == 3 and table.iloc[-1][header] == "hand-crafted (no learning)"
        row = table.iloc[-1]
        assert (row["Rank-1 this run"], row["Rank-5 this run"], row["mAP this run"]) == (
            62.9,
            79.7,
            49.6,
        )
        assert all(pd.isna(row[column]) for column in ("Rank-1 thesis", "Rank-5 thesis",
                                                       "mAP thesis"))  # fmt: skip
        assert (row["run"], row["dataset"], row["profile"], row["protocol"]) == (
            "baseline",
            "synthetic",
            "ci",
            "market",
        )
    ours = row_of(built["4.4"], "Method", "This run (hand-crafted (no learning))")
    assert (ours["Rank-1 (%)"], ours["mAP (%)"], ours["source"]) == (62.9, 49.6, "this run")
    assert len(built["4.4"]) == 7
    # the trained rows' cells are untouched by the baseline
    without = tables.build_thesis_tables(runs)
    pd.testing.assert_frame_equal(built["4.2"].iloc[:2], without["4.2"])
    assert len(without["4.1"]) == 2 and len(without["4.4"]) == 6


def test_write_thesis_tables_prints_the_baseline_row(tmp_path):
    runs = [make_run("resnet50-lossless-offline", 0.412, 0.7, 0.3)]
    written = tables.write_thesis_tables(
        runs, tmp_path, baseline=make_baseline(dataset="Market-1501", protocol="naive")
    )
    markdown = written["table_4_3.md"].read_text()
    assert (
        "| hand-crafted (no learning) | - | - | - | - | - | 62.9 | 79.7 | 49.6 | baseline | Market-1501 | ci | naive |"
        in markdown
    )
    assert "the thesis has no such row" in markdown
    csv = pd.read_csv(written["table_4_1.csv"])
    baseline_row = row_of(csv, "Base architecture", "hand-crafted (no learning)")
    assert pd.isna(baseline_row["Rank-1 thesis"]) and float(baseline_row["mAP this run"]) == 49.6
    assert (
        "no such row"
        not in tables.write_thesis_tables(runs, tmp_path / "plain")["table_4_3.md"].read_text()
    )


@pytest.mark.parametrize(
    ("baseline", "message"),
    [
        ([0.5, 0.4], "expected a dict of metrics, got list"),
        ({"rank1": 0.5, "rank5": 0.6, "mAP": 0.4}, r"missing key\(s\) \['dataset'\]"),
        (make_baseline(rank1=62.9), r"baseline\['rank1'\] must be a fraction"),
        (make_baseline(mean_average_precision=float("nan")), r"baseline\['mAP'\]"),
        (make_baseline(dataset=""), r"baseline\['dataset'\] must be a non-empty string"),
    ],
)
def test_a_bad_baseline_raises_a_value_error_naming_it(baseline, message):
    with pytest.raises(ValueError, match=message):
        tables.build_thesis_tables([], baseline=baseline)


def test_table_runs_keeps_the_rows_the_tables_have_a_line_for():
    from tripletlib.tables import TRAINED_ROWS, table_runs

    runs = [{"row": "resnet50-batch-hard-online"}, {"row": TRAINED_ROWS[0]}]
    assert table_runs(runs) == [{"row": TRAINED_ROWS[0]}]


def test_re_ranked_metrics_add_a_line_to_table_4_4_only():
    runs = [make_run("resnet50-lossless-offline", 0.412, 0.7, 0.3, profile="cpu")]
    re_ranked = {"resnet50-lossless-offline": {"rank1": 0.45, "rank5": 0.72, "mAP": 0.401}}
    built = tables.build_thesis_tables(runs, baseline=make_baseline(), re_ranked=re_ranked)
    table = built["4.4"]
    name = "This run (resnet50-lossless-offline) + re-ranking"
    line = row_of(table, "Method", name)
    assert (line["Rank-1 (%)"], line["mAP (%)"], line["source"]) == (45.0, 40.1, "this run")
    assert (line["dataset"], line["profile"], line["protocol"]) == ("synthetic", "cpu", "market")
    assert pd.isna(line["mAP start (%)"])
    # right after the row's own line, before the baseline's
    methods = list(table["Method"])
    assert methods.index(name) == methods.index("This run (resnet50-lossless-offline)") + 1
    plain = tables.build_thesis_tables(runs, baseline=make_baseline())
    assert len(table) == len(plain["4.4"]) + 1
    for number in ("4.1", "4.2", "4.3"):
        pd.testing.assert_frame_equal(built[number], plain[number])


def test_write_thesis_tables_prints_the_re_ranking_line_and_its_note(tmp_path):
    runs = [make_run("resnet50-lossless-offline", 0.412, 0.7, 0.3)]
    re_ranked = {"resnet50-lossless-offline": {"rank1": 0.45, "rank5": 0.72, "mAP": 0.401}}
    markdown = tables.write_thesis_tables(runs, tmp_path, re_ranked=re_ranked)["table_4_4.md"]
    text = markdown.read_text()
    assert "| This run (resnet50-lossless-offline) + re-ranking | - | 45.0 | 40.1 | - |" in text
    assert "k-reciprocal re-ranking (Zhong et al., CVPR 2017" in text
    plain = tables.write_thesis_tables(runs, tmp_path / "plain")["table_4_4.md"].read_text()
    assert "re-ranking" not in plain


@pytest.mark.parametrize(
    ("re_ranked", "message"),
    [
        ([0.5], "re_ranked: expected a dict row -> metrics, got list"),
        ({"mildnet-triplet-offline": {"rank1": 0.5, "rank5": 0.6, "mAP": 0.4}},
         r"re_ranked\['mildnet-triplet-offline'\]: no run of that row was given"),
        ({"resnet50-lossless-offline": {"rank1": 45.0, "rank5": 0.6, "mAP": 0.4}},
         r"re_ranked\['resnet50-lossless-offline'\]\['rank1'\] must be a fraction"),
        ({"resnet50-lossless-offline": {"rank1": 0.5, "rank5": 0.6}}, r"\['mAP'\] must be"),
    ],
)  # fmt: skip
def test_bad_re_ranked_metrics_raise_a_value_error_naming_them(re_ranked, message):
    runs = [make_run("resnet50-lossless-offline", 0.412, 0.7, 0.3)]
    with pytest.raises(ValueError, match=message):
        tables.build_thesis_tables(runs, re_ranked=re_ranked)
