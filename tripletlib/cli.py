"""The `tripletlib` command: synth, summary, train, evaluate, book; embed, index, search.

Heavy imports (Keras, TensorFlow) happen inside the sub-commands, so `tripletlib --help` is instant.
User errors (a bad argument, a missing dataset) print one clear line and exit with status 2.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from tripletlib import config, retrieval
from tripletlib.book import BookError


class UsageError(ValueError):
    """A problem with what the user asked for; printed without a traceback."""


def _command_synth(args: argparse.Namespace) -> int:
    explicit = [f"--{name.replace('_', '-')}" for name in ("train_ids", "test_ids")
                if getattr(args, name) is not None]  # fmt: skip
    if args.preset and explicit:
        raise UsageError(
            f"--preset {args.preset} sets every count; leave out {' and '.join(explicit)}, or "
            "leave out --preset to choose the counts"
        )
    _require_folder_or_nothing(args.out, "--out")
    from tripletlib.synthetic import PRESETS, generate_synthetic_market

    kwargs = {
        "seed": args.seed,
        "progress": not args.quiet,
        "workers": args.workers,
        "overwrite": args.overwrite,
    }
    if args.preset:
        kwargs["preset"] = args.preset
    else:
        small = PRESETS["small"]
        kwargs.update(
            train_ids=small.train_ids if args.train_ids is None else args.train_ids,
            test_ids=small.test_ids if args.test_ids is None else args.test_ids,
        )
    summary = generate_synthetic_market(args.out, **kwargs)
    verb = "found it complete and unchanged in" if summary.reused else "wrote"
    print(f"{verb} a synthetic Market-shaped dataset: {args.out}")
    print(summary)
    return 0


def _command_summary(args: argparse.Namespace) -> int:
    from tripletlib.data import (
        MarketFormatError,
        identities_per_camera,
        load_market1501,
        save_metadata,
        summarize,
    )

    if args.save and Path(args.save).is_dir():
        raise UsageError(f"--save {args.save} is a folder; expected a CSV file name")
    try:
        metadata = load_market1501(
            args.data, check_images=args.check, progress=args.check and not args.quiet
        )
    except MarketFormatError as error:
        if not args.check or not error.problems:
            raise
        for path, reason in error.problems:  # --check names every bad file, not the first ten
            print(f"bad: {path}: {reason}")
        raise UsageError(
            f"{args.data}: {len(error.problems)} problem(s), each listed above"
        ) from None
    from tripletlib.data import dataset_kind

    kind = dataset_kind(args.data)
    print(f"dataset: {args.data} ({kind})")
    if args.check:
        print(f"checked: all {len(metadata)} images decode")
    print(summarize(metadata).to_string())
    print()
    print("identities per camera:")
    print(identities_per_camera(metadata).to_string())
    sys.stdout.flush()  # the results are out before the file is written
    if args.save:
        save_metadata(metadata, args.save)
        print(f"metadata table saved to {args.save}")
    return 0


def _overrides_from_args(args: argparse.Namespace) -> dict:
    """`--set FIELD=VALUE` (repeated), then `--epochs` / `--steps-per-epoch`, as profile overrides."""
    overrides = config.parse_overrides(getattr(args, "set", None) or [])
    for name in ("epochs", "steps_per_epoch"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return overrides


def _profile_from_args(args: argparse.Namespace) -> config.Profile:
    return config.resolve_profile(args.profile, **_overrides_from_args(args))


def _command_train(args: argparse.Namespace) -> int:
    config.validate_row(args.backbone, args.loss, args.mining)
    profile = _profile_from_args(args)
    _require_dataset(args.data)
    _require_folder_or_nothing(args.out, "--out")
    from tripletlib.training import train_row

    result = train_row(
        args.backbone,
        args.loss,
        args.mining,
        profile,
        data_root=args.data,
        out_dir=args.out,
        seed=args.seed,
        resume=not args.restart,
        progress=not args.quiet,
        overwrite=args.overwrite,
        keep_checkpoints=args.keep_checkpoints,
    )
    if result.reused:
        print(f"{args.out} already holds this finished run (same config.json); not trained again")
    _print_metrics(result.metrics)
    return 0


def _command_evaluate(args: argparse.Namespace) -> int:
    if args.re_rank and args.search != "exact":
        raise UsageError(
            f"--re-rank needs --search exact (it re-ranks the whole gallery), got --search "
            f"{args.search}"
        )
    _require_dataset(args.data)
    _require_model(args.model)
    from tripletlib.runs import evaluate_saved_model, save_evaluation

    # The cache of `train` beside the model is only read (a read-only folder works); --cache-dir
    # DIR reads and writes DIR; --cache-dir none decodes every image in memory.
    cache_dir, write_cache = Path(args.model).resolve().parent / ".cache", False
    if args.cache_dir is not None and args.cache_dir.lower() == "none":
        cache_dir = None
    elif args.cache_dir is not None:
        _require_folder_or_nothing(args.cache_dir, "--cache-dir")
        cache_dir, write_cache = Path(args.cache_dir), True
    metrics = evaluate_saved_model(
        args.model,
        args.data,
        search=args.search,
        protocol=args.protocol,
        progress=not args.quiet,
        save=False,
        re_rank=args.re_rank,
        annoy_trees=args.annoy_trees,
        annoy_search_k=args.annoy_search_k,
        cache_dir=cache_dir,
        write_cache=write_cache,
    )
    for key in ("rank1", "rank5", "mAP"):
        print(f"{key:>6}: {100 * metrics[key]:.1f} %")
    print(f"queries evaluated: {metrics['num_valid_queries']}; search: {args.search}")
    if args.re_rank:
        re_ranked = metrics["re_ranked"]
        print("+ re-ranking (k-reciprocal, k1={k1}, k2={k2}, lambda={lambda_value}): ".format(
            **re_ranked) + ", ".join(f"{key} {100 * re_ranked[key]:.1f} %"
                                     for key in ("rank1", "rank5", "mAP")))  # fmt: skip
    sys.stdout.flush()  # printed before anything is written: a read-only folder loses nothing
    try:
        path = save_evaluation(args.model, metrics)
    except OSError as error:
        if error.errno not in READ_ONLY_ERRNOS:
            raise
        # A read-only model folder: the metrics above are the result; only their record is missing.
        print(f"tripletlib evaluate: not saved ({_one_line(error)}); the metrics above are "
              "complete", file=sys.stderr)
        return 0
    print(f"written to {path}")
    return 0


def _require_model(model: str) -> None:
    if not (Path(model) / "config.json").is_file():
        raise UsageError(
            f"{model} is not a trained model folder: expected config.json and "
            "embedder.weights.h5 written by `tripletlib train --out DIR`"
        )


def _command_embed(args: argparse.Namespace) -> int:
    _require_model(args.model)
    from tripletlib import gallery

    out = gallery.check_output(args.out, args.overwrite)
    if out.suffix != ".npz":
        raise UsageError(f"--out {out}: expected a file name ending with .npz")
    found = gallery.embed_folder(args.model, args.images, recursive=not args.no_recursive,
                                 progress=not args.quiet)  # fmt: skip
    gallery.save_gallery(found, out, overwrite=args.overwrite)
    print(f"embedded {len(found.paths)} images of {args.images} "
          f"({found.embeddings.shape[1]} dimensions) into {out}")  # fmt: skip
    return 0


def _command_index(args: argparse.Namespace) -> int:
    from tripletlib import gallery

    out = gallery.build_index(args.embeddings, args.out, n_trees=args.trees,
                              overwrite=args.overwrite)  # fmt: skip
    print(f"Annoy index of {args.embeddings} ({args.trees} trees) written to {out} "
          f"and {gallery.sidecar_path(out)}")  # fmt: skip
    return 0


def _command_search(args: argparse.Namespace) -> int:
    _require_model(args.model)
    from tripletlib import files, gallery

    figure_path = None
    if args.figure:
        figure_path = gallery.check_output(args.figure, args.overwrite, "--figure")
    hits = gallery.search(args.model, args.gallery, args.query, k=args.k)
    print("rank  distance  path")
    for hit in hits:
        print(f"{hit.rank:>4}  {hit.distance:8.4f}  {hit.path}")
    sys.stdout.flush()  # the list is out before the figure is written
    if figure_path is not None:
        figure = gallery.search_figure(args.query, hits)
        with files.atomic_path(figure_path) as temporary:
            figure.savefig(temporary, format=figure_path.suffix.lstrip(".") or "png")
        print(f"figure written to {figure_path}")
    return 0


def _command_book(args: argparse.Namespace) -> int:
    overrides = _overrides_from_args(args)
    config.resolve_profile(args.profile, **overrides)  # a bad value fails before any notebook
    from tripletlib.book import run_book

    run_book(
        profile=args.profile,
        overrides=overrides or None,
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
            "(bounding_box_train/, bounding_box_test/, query/), a folder of people "
            "(DIR/<person>/<images>) or make one with `tripletlib synth --out DIR`"
        )


def _require_folder_or_nothing(path: str, option: str) -> None:
    """An output path must be a folder or not exist yet; its nearest existing parent writable."""
    target = Path(path).expanduser()
    if target.exists() and not target.is_dir():
        raise UsageError(f"{option} {path} is a file; expected a folder (or a new folder name)")
    existing = target
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: cannot write into {existing} (permission denied)")


def _print_metrics(metrics: dict) -> None:
    print(f"row {metrics['row']} on {metrics['dataset']} data, profile {metrics['profile']}")
    for state, label in (("untrained", "untrained"), ("pretrained", "start"), ("trained", "trained")):
        if not metrics.get(state):  # "pretrained": the start alone (Profile.warm_start)
            continue
        values = metrics[state]
        print(
            f"  {label:>10}: Rank-1 {100 * values['rank1']:5.1f}  Rank-5 "
            f"{100 * values['rank5']:5.1f}  mAP {100 * values['mAP']:5.1f}"
        )


SET_HELP = (
    "change one field of the profile (repeatable), typed as the field ('none' for an optional "
    "one), e.g. --set epochs=1 --set weights=none; config.Profile lists the fields"
)


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (the usage block is one `--help` away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option shows its default, except required ones, flags and "not set" (None)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        unset = default is None or default is False or default is argparse.SUPPRESS
        if "%(default)" in text or action.required or unset:
            return text
        return f"{text} (default: %(default)s)"


def _integer(lowest: int):
    """An argparse type: an integer >= `lowest`, else an error naming the value."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < lowest:
            raise argparse.ArgumentTypeError(f"{value}; expected an integer >= {lowest}")
        return value

    parse.__name__ = f"integer >= {lowest}"
    return parse


def _search_k(text: str) -> int:
    """An argparse type: Annoy's search_k, -1 or a positive integer."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1 and value != -1:
        raise argparse.ArgumentTypeError(f"{value}; expected -1 or a positive integer")
    return value


def _first_sentence(text: str) -> str:
    for separator in (": ", "; ", ". "):
        text = text.split(separator)[0]
    return text.rstrip(".")


def _train_epilog() -> str:
    lines = ["profiles (--profile):"]
    for name, profile in sorted(config.PROFILES.items()):
        steps = profile.steps_per_epoch or "all"
        warm = f", from the {profile.warm_start} start" if profile.warm_start else ""
        lines.append(
            f"  {name:<7} {profile.dataset}, {profile.image_height}x{profile.image_width}, "
            f"{profile.offline_iterations} x {profile.epochs} epochs x {steps} steps, lr "
            f"{profile.learning_rate:g}{warm}: {_first_sentence(profile.description)}"
        )
    lines += [
        "",
        "loss and mining (--loss with --mining):",
        f"  offline  {' | '.join(config.OFFLINE_LOSSES):<22} (anchor, positive, negative) "
        "triplets; iteration 2 mines hard negatives",
        f"  online   {' | '.join(config.ONLINE_LOSSES):<22} P x K batches, triplets mined in "
        "each batch",
        "",
        "--out: a new or empty folder, or a run of the same config (resumed from its last "
        "checkpoint, or returned when finished); another run is replaced only with --overwrite.",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tripletlib",
        description="Triplet re-identification (Murthy 2020): data, training, evaluation, book.",
        formatter_class=_HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    options = {"formatter_class": _HelpFormatter}

    synth = sub.add_parser(
        "synth", help="write a synthetic Market-1501-shaped dataset", **options,
        description="Write bounding_box_train/, bounding_box_test/ and query/ with Market-1501's "
        "names. Rerunning the same command reuses a complete, unchanged set and finishes an "
        "interrupted one.",
    )  # fmt: skip
    synth.add_argument("--out", required=True, help="folder to create (new, empty, or ours)")
    synth.add_argument("--train-ids", type=_integer(1),
                       help="training identities (default: 12; not with --preset)")
    synth.add_argument("--test-ids", type=_integer(1),
                       help="test identities (default: 10; not with --preset)")
    synth.add_argument("--seed", type=_integer(0), default=0,
                       help="random seed: the same seed writes the same files")
    synth.add_argument("--preset", choices=["market"],
                       help="Market-1501's counts (751 / 750 identities; 12,936 train, 19,732 "
                       "gallery, 3,368 query images); excludes --train-ids and --test-ids")
    synth.add_argument("--workers", type=_integer(1), default=1, help="drawing processes")
    synth.add_argument("--overwrite", action="store_true",
                       help="replace another or a damaged synthetic set in --out")
    synth.add_argument("--quiet", action="store_true", help="no progress bar")
    synth.set_defaults(handler=_command_synth)

    summary = sub.add_parser("summary", help="identities and images per split and camera",
                             **options)
    summary.add_argument("--data", required=True, help="a Market-1501-shaped dataset folder")
    summary.add_argument("--check", action="store_true",
                         help="also decode every image and name each bad file")
    summary.add_argument("--save", help="also save the metadata table (CSV) to this file")
    summary.add_argument("--quiet", action="store_true", help="no progress bar (with --check)")
    summary.set_defaults(handler=_command_summary)

    train = sub.add_parser("train", help="train one row of thesis tables 4.1-4.3",
                           epilog=_train_epilog(), **options)
    train.add_argument("--backbone", required=True, choices=config.BACKBONE_CHOICES,
                       help="resnet50 (Section 3.2.2) or mildnet (VGG16 multi-layer)")
    train.add_argument("--loss", required=True, choices=config.LOSS_CHOICES,
                       help="triplet (Eq. 3.3), lossless (Eq. 3.6): offline; batch-all, "
                       "batch-hard: online (see below)")
    train.add_argument("--mining", required=True, choices=config.MINING_CHOICES,
                       help="offline: triplets, hard negatives mined between iterations; "
                       "online: P x K batches")
    train.add_argument("--profile", default="cpu", choices=sorted(config.PROFILES),
                       help="image size, schedule and data of the run (listed below)")
    train.add_argument("--data", required=True, help="Market-1501-shaped dataset folder")
    train.add_argument("--out", required=True,
                       help="run folder for weights, curves, checkpoints and metrics")
    train.add_argument("--seed", type=_integer(0), default=0,
                       help="seed of weights, batches and augmentation")
    train.add_argument("--epochs", type=_integer(1),
                       help="override the profile's epochs per iteration")
    train.add_argument("--steps-per-epoch", type=_integer(1),
                       help="override the profile's steps per epoch")
    train.add_argument("--set", action="append", metavar="FIELD=VALUE", help=SET_HELP)
    train.add_argument("--restart", action="store_true",
                       help="train the same run again from the start instead of resuming")
    train.add_argument("--overwrite", action="store_true",
                       help="replace a run of another config in --out")
    train.add_argument("--keep-checkpoints", type=_integer(1), default=1,
                       help="how many of the last checkpoints to keep")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(handler=_command_train)

    evaluate = sub.add_parser("evaluate", help="Rank-k / CMC / mAP of a trained model", **options)
    evaluate.add_argument("--model", required=True, help="a folder written by `tripletlib train`")
    evaluate.add_argument("--data", required=True,
                          help="dataset whose query and gallery are evaluated")
    evaluate.add_argument("--search", choices=["exact", "annoy"], default="exact",
                          help="exact distances or Annoy's approximate neighbours (Sec. 3.3.2)")
    evaluate.add_argument("--annoy-trees", type=_integer(1), default=retrieval.ANNOY_N_TREES,
                          help="with --search annoy: trees in the index")
    evaluate.add_argument("--annoy-search-k", type=_search_k, default=retrieval.ANNOY_SEARCH_K,
                          help="with --search annoy: nodes inspected per query, -1 for n_trees x "
                          "neighbours; docs/benchmarks.md has the recall and time of each setting")
    evaluate.add_argument("--protocol", choices=["market", "naive"], default="market",
                          help="market: same-camera matches and junk ignored (Section 4.1); "
                          "naive: every gallery image counts")
    evaluate.add_argument("--re-rank", action="store_true",
                          help="also k-reciprocal re-ranking (Zhong et al. 2017; k1=20, k2=6, "
                          "lambda=0.3), saved under 're_ranked' in the same file; exact only")
    evaluate.add_argument("--cache-dir", help="folder for the decoded images, or 'none' (default: "
                          "read the cache beside --model's folder, write none)")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bars")
    evaluate.set_defaults(handler=_command_evaluate)

    book = sub.add_parser("book", help="run the book's notebooks in order with papermill",
                          **options)
    book.add_argument("--profile", default="cpu", choices=sorted(config.PROFILES),
                      help="the profile every notebook runs with")
    book.add_argument("--out", default="results", help="executed notebooks, tables, figures")
    book.add_argument("--data", help="a Market-1501 folder (default: generate synthetic data)")
    book.add_argument("--book", help="the folder holding NN_*.ipynb (default: the repo's book/)")
    book.add_argument("--seed", type=_integer(0), default=0, help="seed of data and training")
    book.add_argument("--set", action="append", metavar="FIELD=VALUE", help=SET_HELP)
    book.add_argument("--only", nargs="*",
                      help="run only notebooks whose name starts with these (default: all)")
    book.set_defaults(handler=_command_book)

    embed = sub.add_parser("embed", help="embed a folder of your own images with a trained model",
                           **options)
    embed.add_argument("--model", required=True, help="a folder written by `tripletlib train`")
    embed.add_argument("--images", required=True,
                       help="folder of .jpg/.jpeg/.png/.bmp files, any names (sub-folders too)")
    embed.add_argument("--out", required=True, help="the .npz file to write")
    embed.add_argument("--no-recursive", action="store_true",
                       help="only the folder's own files, not those of its sub-folders")
    embed.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    embed.add_argument("--quiet", action="store_true", help="no progress bars")
    embed.set_defaults(handler=_command_embed)

    index = sub.add_parser("index", help="build an on-disk Annoy index of embedded images",
                           **options)
    index.add_argument("--embeddings", required=True, help="an .npz from `tripletlib embed`")
    index.add_argument("--out", required=True,
                       help="the index file to write (and OUT.json beside it), e.g. gallery.ann")
    index.add_argument("--trees", type=_integer(1), default=50,
                       help="Annoy trees: more is more accurate, larger and slower to build")
    index.add_argument("--overwrite", action="store_true",
                       help="replace an existing --out and its OUT.json")
    index.set_defaults(handler=_command_index)

    search = sub.add_parser("search", help="the gallery images nearest to a query image",
                            **options)
    search.add_argument("--model", required=True, help="the run that embedded the gallery")
    search.add_argument("--gallery", required=True,
                        help="an .npz from `tripletlib embed` (exact search) or an index from "
                        "`tripletlib index` (Annoy, memory-mapped)")
    search.add_argument("--query", required=True, help="an image file")
    search.add_argument("-k", type=_integer(1), default=10, help="how many images to list")
    search.add_argument("--figure", help="also draw the ranked list into this PNG file")
    search.add_argument("--overwrite", action="store_true", help="replace an existing --figure")
    search.set_defaults(handler=_command_search)
    return parser


EXPECTED_ERRORS = (ValueError, OSError, BookError)
# The errors of a folder one may read but not write (permissions, a read-only file system).
READ_ONLY_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)


def _one_line(error: BaseException) -> str:
    """An error as the user should read it: OSError as "what: path", others as they are."""
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    return str(error)


# Sub-commands that load Keras: imported first through `quiet`, so that TensorFlow's start-up log
# lines (a oneDNN notice, CPU instructions) do not reach the terminal.
KERAS_COMMANDS = ("train", "evaluate", "book", "embed", "search")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in KERAS_COMMANDS:
        from tripletlib.quiet import import_keras_quietly

        import_keras_quietly()
    try:
        status = args.handler(args)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        # `tripletlib summary | head`: the reader left. Point stdout at /dev/null so that the
        # interpreter's last flush does not raise again, and say it once.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        print(f"tripletlib {args.command}: error: output closed early (broken pipe)",
              file=sys.stderr)
        return 2
    except EXPECTED_ERRORS as error:
        print(f"tripletlib {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tripletlib {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
