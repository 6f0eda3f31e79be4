"""The `tripletlib` command: synth, summary, train, evaluate, book.

Heavy imports (Keras, TensorFlow) happen inside the sub-commands, so `tripletlib --help` is instant.
User errors (a bad argument, a missing dataset) print one clear line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from tripletlib import config
from tripletlib.book import BookError


class UsageError(ValueError):
    """A problem with what the user asked for; printed without a traceback."""


def _command_synth(args: argparse.Namespace) -> int:
    from tripletlib.synthetic import generate_synthetic_market

    kwargs = {
        "seed": args.seed,
        "progress": not args.quiet,
        "workers": args.workers,
        "overwrite": args.overwrite,
    }
    if args.preset:
        kwargs["preset"] = args.preset
    else:
        kwargs.update(train_ids=args.train_ids, test_ids=args.test_ids)
    summary = generate_synthetic_market(args.out, **kwargs)
    print(f"wrote a synthetic Market-shaped dataset to {args.out}")
    print(summary)
    return 0


def _command_summary(args: argparse.Namespace) -> int:
    from tripletlib.data import identities_per_camera, load_market1501, summarize

    metadata = load_market1501(args.data)
    kind = config.dataset_kind(args.data)
    print(f"dataset: {args.data} ({kind})")
    print(summarize(metadata).to_string())
    print()
    print("identities per camera:")
    print(identities_per_camera(metadata).to_string())
    if args.save:
        from tripletlib.data import save_metadata

        save_metadata(metadata, args.save)
        print(f"metadata table saved to {args.save}")
    return 0


def _profile_from_args(args: argparse.Namespace) -> config.Profile:
    overrides = {}
    for name in ("epochs", "steps_per_epoch"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return config.resolve_profile(args.profile, **overrides)


def _command_train(args: argparse.Namespace) -> int:
    config.validate_row(args.backbone, args.loss, args.mining)
    profile = _profile_from_args(args)
    _require_dataset(args.data)
    from tripletlib.training import train_row

    train_row(
        args.backbone,
        args.loss,
        args.mining,
        profile,
        data_root=args.data,
        out_dir=args.out,
        seed=args.seed,
        resume=not args.restart,
        progress=not args.quiet,
    )
    metrics = json.loads((Path(args.out) / "metrics.json").read_text())
    _print_metrics(metrics)
    return 0


def _command_evaluate(args: argparse.Namespace) -> int:
    _require_dataset(args.data)
    if not (Path(args.model) / "config.json").is_file():
        raise UsageError(
            f"{args.model} is not a trained model folder: expected config.json and "
            "embedder.weights.h5 written by `tripletlib train --out DIR`"
        )
    from tripletlib.runs import evaluate_saved_model

    metrics = evaluate_saved_model(
        args.model, args.data, search=args.search, protocol=args.protocol, progress=not args.quiet
    )
    for key in ("rank1", "rank5", "mAP"):
        print(f"{key:>6}: {100 * metrics[key]:.1f} %")
    print(f"queries evaluated: {metrics['num_valid_queries']}; search: {args.search}")
    print(f"written to {metrics['path']}")
    return 0


def _command_book(args: argparse.Namespace) -> int:
    config.resolve_profile(args.profile)
    from tripletlib.book import run_book

    run_book(
        profile=args.profile,
        out_dir=args.out,
        data_root=args.data,
        book_dir=args.book,
        seed=args.seed,
        only=args.only,
    )
    return 0


def _require_dataset(data_root: str | None) -> None:
    if data_root is None or not Path(data_root).is_dir():
        raise UsageError(
            f"dataset folder {data_root!r} does not exist: point --data at a Market-1501 folder "
            "(bounding_box_train/, bounding_box_test/, query/) or make one with "
            "`tripletlib synth --out DIR`"
        )


def _print_metrics(metrics: dict) -> None:
    print(f"row {metrics['row']} on {metrics['dataset']} data, profile {metrics['profile']}")
    for state in ("untrained", "pretrained", "trained"):
        if state not in metrics:  # "pretrained": only after a warm start (pretrain_steps > 0)
            continue
        values = metrics[state]
        print(
            f"  {state:>10}: Rank-1 {100 * values['rank1']:5.1f}  Rank-5 "
            f"{100 * values['rank5']:5.1f}  mAP {100 * values['mAP']:5.1f}"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tripletlib",
        description="Triplet re-identification (Murthy 2020): data, training, evaluation, book.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    synth = sub.add_parser("synth", help="write a synthetic Market-1501-shaped dataset")
    synth.add_argument("--out", required=True, help="folder to create")
    synth.add_argument("--train-ids", type=int, default=12)
    synth.add_argument("--test-ids", type=int, default=10)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--preset", choices=["market"], help="Market-1501's identity and image counts")
    synth.add_argument("--workers", type=int, default=1, help="drawing processes")
    synth.add_argument("--overwrite", action="store_true", help="replace an earlier synthetic set")
    synth.add_argument("--quiet", action="store_true")
    synth.set_defaults(handler=_command_synth)

    summary = sub.add_parser("summary", help="identities and images per split and camera")
    summary.add_argument("--data", required=True)
    summary.add_argument("--save", help="also save the metadata table (CSV) here")
    summary.set_defaults(handler=_command_summary)

    train = sub.add_parser("train", help="train one row of thesis tables 4.1-4.3")
    train.add_argument("--backbone", required=True, choices=config.BACKBONE_CHOICES)
    train.add_argument("--loss", required=True, choices=config.LOSS_CHOICES)
    train.add_argument("--mining", required=True, choices=config.MINING_CHOICES)
    train.add_argument("--profile", default="cpu", choices=sorted(config.PROFILES))
    train.add_argument("--data", required=True, help="Market-1501-shaped dataset folder")
    train.add_argument("--out", required=True, help="folder for weights, curves, metrics")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--epochs", type=int, help="override the profile's epochs per iteration")
    train.add_argument("--steps-per-epoch", type=int, help="override the profile's steps")
    train.add_argument("--restart", action="store_true", help="ignore existing checkpoints")
    train.add_argument("--quiet", action="store_true")
    train.set_defaults(handler=_command_train)

    evaluate = sub.add_parser("evaluate", help="Rank-k / CMC / mAP of a trained model")
    evaluate.add_argument("--model", required=True, help="a folder written by `tripletlib train`")
    evaluate.add_argument("--data", required=True)
    evaluate.add_argument("--search", choices=["exact", "annoy"], default="exact")
    evaluate.add_argument("--protocol", choices=["market", "naive"], default="market")
    evaluate.add_argument("--quiet", action="store_true")
    evaluate.set_defaults(handler=_command_evaluate)

    book = sub.add_parser("book", help="run the book's notebooks in order with papermill")
    book.add_argument("--profile", default="cpu", choices=sorted(config.PROFILES))
    book.add_argument("--out", default="results", help="executed notebooks, tables, figures")
    book.add_argument("--data", help="a Market-1501 folder (default: generate synthetic data)")
    book.add_argument("--book", help="the folder holding NN_*.ipynb (default: the repo's book/)")
    book.add_argument("--seed", type=int, default=0)
    book.add_argument("--only", nargs="*", help="run only notebooks whose name starts with these")
    book.set_defaults(handler=_command_book)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError, BookError) as error:
        print(f"tripletlib {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tripletlib {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
