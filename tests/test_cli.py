"""The command line: clear messages instead of tracebacks, and the synth -> summary round trip."""

import subprocess
import sys

import pytest

from tripletlib.cli import main


def test_bad_row_is_one_clear_line(capsys):
    status = main(
        [
            "train",
            "--backbone",
            "resnet50",
            "--loss",
            "batch-all",
            "--mining",
            "offline",
            "--data",
            "nowhere",
            "--out",
            "unused",
        ]
    )
    error = capsys.readouterr().err
    assert status == 2
    assert "needs --mining online" in error and "Traceback" not in error


def test_missing_dataset_names_the_folder(capsys, tmp_path):
    missing = tmp_path / "no-such-market"
    status = main(
        [
            "train",
            "--backbone",
            "resnet50",
            "--loss",
            "triplet",
            "--mining",
            "offline",
            "--profile",
            "ci",
            "--data",
            str(missing),
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert status == 2
    assert str(missing) in capsys.readouterr().err


def test_unknown_choice_is_rejected_by_argparse():
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "train",
                "--backbone",
                "alexnet",
                "--loss",
                "triplet",
                "--mining",
                "offline",
                "--data",
                "x",
                "--out",
                "y",
            ]
        )
    assert exit_info.value.code == 2


def test_python_dash_m_runs_the_same_command():
    completed = subprocess.run(
        [sys.executable, "-m", "tripletlib", "--help"], capture_output=True, text=True, check=True
    )
    assert "synth" in completed.stdout and "book" in completed.stdout


def test_synth_then_summary_counts_the_files(tmp_path, capsys):
    out = tmp_path / "market"
    assert (
        main(
            [
                "synth",
                "--out",
                str(out),
                "--train-ids",
                "12",
                "--test-ids",
                "10",
                "--seed",
                "7",
                "--quiet",
            ]
        )
        == 0
    )
    assert main(["summary", "--data", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "synthetic" in printed
    for folder in ("bounding_box_train", "bounding_box_test", "query"):
        count = len(list((out / folder).glob("*.jpg")))
        assert count > 0
        assert str(count) in printed


def test_printed_metrics_show_the_start_only_when_there_was_one(capsys):
    from tripletlib.cli import _print_metrics

    values = {"rank1": 0.1, "rank5": 0.2, "mAP": 0.05}
    metrics = {"row": "r", "dataset": "synthetic", "profile": "ci", "untrained": values,
               "trained": {**values, "mAP": 0.07}}  # fmt: skip
    _print_metrics(metrics)
    plain = capsys.readouterr().out
    assert "start" not in plain and "mAP   7.0" in plain
    _print_metrics({**metrics, "pretrained": {**values, "mAP": 0.06}})
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0].strip() for line in lines[1:]] == ["untrained", "start", "trained"]
    assert lines[2].endswith("mAP   6.0")


def test_every_option_has_help_and_shows_its_default():
    import argparse

    from tripletlib.cli import build_parser

    parser = build_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, command in commands.choices.items():
        text = command.format_help()
        for action in command._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{name} {action.option_strings}: no help text"
            if action.default is not None and action.default is not False and not action.required:
                assert f"(default: {action.default})" in " ".join(text.split()), (
                    name, action.option_strings,
                )  # fmt: skip


def test_train_help_lists_profiles_and_which_loss_goes_with_which_mining(capsys):
    from tripletlib import config

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    lines = text.splitlines()
    for name in config.PROFILES:
        assert sum(line.strip().startswith(f"{name} ") for line in lines) == 1, name
    offline = next(line for line in lines if line.strip().startswith("offline "))
    online = next(line for line in lines if line.strip().startswith("online "))
    assert "triplet | lossless" in offline and "batch-all | batch-hard" in online


def test_re_rank_with_annoy_is_one_clear_line(capsys, tmp_path):
    from tripletlib.cli import main

    code = main(["evaluate", "--model", str(tmp_path), "--data", str(tmp_path), "--re-rank",
                 "--search", "annoy"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "tripletlib evaluate: error: --re-rank needs --search exact (it re-ranks the whole "
        "gallery), got --search annoy"
    ]


def test_evaluate_annoy_settings_default_to_the_library_and_reject_bad_values(capsys):
    from tripletlib import retrieval
    from tripletlib.cli import build_parser

    parser = build_parser()
    defaults = parser.parse_args(["evaluate", "--model", "m", "--data", "d"])
    assert (defaults.annoy_trees, defaults.annoy_search_k) == (
        retrieval.ANNOY_N_TREES, retrieval.ANNOY_SEARCH_K,
    )  # fmt: skip
    chosen = parser.parse_args(["evaluate", "--model", "m", "--data", "d", "--search", "annoy",
                                "--annoy-trees", "10", "--annoy-search-k=-1"])  # fmt: skip
    assert (chosen.annoy_trees, chosen.annoy_search_k) == (10, -1)
    for bad in (["--annoy-search-k", "0"], ["--annoy-trees", "0"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["evaluate", "--model", "m", "--data", "d", *bad])
    assert "expected" in capsys.readouterr().err
