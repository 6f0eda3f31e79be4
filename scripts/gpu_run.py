"""The prepared GPU check, in one call: the `gpu` book, then a thesis-length row's speed.

    KERAS_BACKEND=jax python scripts/gpu_run.py docs/gpu_run/h200 [--book-limit 480]

1. Prints and keeps what ran: `nvidia-smi`, JAX's devices, the Keras backend and versions.
2. Writes the market-sized synthetic set (`synthetic` preset "market": 751 / 750 identities,
   12,936 train images) with one process per core, once, under `--work`.
3. Trains the `gpu` profile's label-free starts on the device (`scripts/make_starts.py
   --input-size 256x128 --width 1`: instance discrimination on the 600 unlabelled people of
   `pretraining.START_POOL`, `--start-steps` steps per backbone) under `--start-limit` seconds,
   into `--work`/starts, and keeps their JSON records: the shipped starts are 64x32 ones.
4. Runs the whole book on the `gpu` profile from those starts (`tripletlib book --profile gpu
   --data ... --set warm_start=WORK/starts`) under `--book-limit` seconds, and keeps its log,
   book_run.json, tables, records and each row's metrics.json and history.csv.
5. Times a thesis-length row: ResNet-50, lossless loss, offline mining, 256x128, the thesis
   profile with random weights in ImageNet's place, bf16 and device-resident batches, over the
   12,936 train images (a full pass per epoch, batch 32). One epoch first (the compilation), then
   epochs 2-N (`--row-epochs`, default 20), under `--row-limit` seconds; from the seconds of
   epochs 2-N it projects the thesis' 2 x 100 epochs (Section 3.3.1) and prints the projection.

Every file it writes into OUT is small (logs, JSON, CSV, Markdown): OUT is meant to be copied into
docs/gpu_run/. `--tiny` runs the same steps on the CPU in about a minute (12 / 8 identities, 64x32,
a quarter of the channels, starts of 2 steps on 6 people, notebook 00 only, 2 row epochs of 2
steps): the test of this script.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tripletlib import files

ROOT = Path(__file__).resolve().parents[1]
THESIS_EPOCHS = 200  # 2 offline iterations x 100 epochs (Section 3.3.1)
# The thesis row at the thesis' size, without ImageNet (random weights) and on the synthetic set.
ROW_SETTINGS = [
    "weights=none", "dataset=synthetic", "precision=mixed_bfloat16", "device_resident=true",
    "offline_iterations=1", "embed_batch_size=256",
]  # fmt: skip
# --tiny: CPU-sized stand-ins for both the book and the row.
TINY_SETTINGS = [
    "image_height=64", "image_width=32", "width_multiplier=0.25", "epochs=1",
    "steps_per_epoch=2", "triplet_batch_size=8", "pk_identities=4", "pk_images=4",
    "embed_batch_size=64", "synthetic_preset=none", "synthetic_train_ids=12",
    "synthetic_test_ids=8",
]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="evidence folder (small files only)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/gpu_run_work"),
                        help="data, book and run folders (large)")  # fmt: skip
    parser.add_argument("--book-limit", type=int, default=480, help="seconds for the whole book")
    parser.add_argument("--row-limit", type=int, default=300, help="seconds for the timed row")
    parser.add_argument("--row-epochs", type=int, default=20, help="epochs of the timed row")
    parser.add_argument("--start-limit", type=int, default=240,
                        help="seconds for training both label-free starts")
    parser.add_argument("--start-steps", type=int, default=1500,
                        help="instance-discrimination steps per backbone (the CPU recipe's 1500)")
    parser.add_argument("--skip-book", action="store_true", help="only the timed row")
    parser.add_argument("--tiny", action="store_true", help="CPU-sized check of this script")
    parser.add_argument("--row-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("book_limit", "row_limit", "row_epochs", "start_limit", "start_steps"):
        if getattr(args, name) < (2 if name == "row_epochs" else 1):
            parser.error(f"--{name.replace('_', '-')} {getattr(args, name)}; expected more")
    if args.row_only:  # the child process of step 4
        return timed_row(args)
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    summary: dict = {"tiny": args.tiny, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    summary["environment"] = environment(args.out)
    summary["data"] = prepare_data(args)
    if not args.skip_book:
        summary["starts"] = train_starts(args)
        summary["book"] = run_book(args)
    summary["row"] = run_row(args)
    write(args.out / "summary.json", json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0 if summary["row"].get("finished") else 1


# The way out of a damaged file a step wrote (an interrupted step).
RERUN = "run scripts/gpu_run.py again into a new OUT"


def write(path: Path, text: str) -> None:
    files.write_text_atomic(path, text)


def child_environment() -> dict[str, str]:
    paths = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    return {
        **os.environ,
        "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "jax"),
        "PYTHONPATH": os.pathsep.join(path for path in paths if path),
        "MPLBACKEND": "Agg",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "JAX_COMPILATION_CACHE_DIR": os.environ.get("JAX_COMPILATION_CACHE_DIR", "/tmp/jaxcache"),
    }


def environment(out: Path) -> dict:
    """`nvidia-smi`, JAX's devices and the versions, printed and kept in OUT/environment.txt."""
    lines = [f"python {sys.version.split()[0]} on {platform.platform()}"]
    smi = shutil.which("nvidia-smi")
    if smi:
        lines.append(subprocess.run([smi], capture_output=True, text=True, check=False).stdout)
    else:
        lines.append("nvidia-smi: not found (no NVIDIA GPU here)")
    probe = ("import jax, keras; print('jax', jax.__version__, jax.devices()); "
             "print('keras', keras.__version__, keras.backend.backend())")  # fmt: skip
    completed = subprocess.run([sys.executable, "-c", probe], env=child_environment(),
                               capture_output=True, text=True, check=False)  # fmt: skip
    lines.append(completed.stdout + completed.stderr[-2000:])
    text = "\n".join(lines)
    print(text, flush=True)
    write(out / "environment.txt", text)
    return {"nvidia_smi": bool(smi), "devices": completed.stdout.strip()}


def prepare_data(args) -> dict:
    """The synthetic set: market-sized (one drawing process per core), or tiny with --tiny."""
    sys.path.insert(0, str(ROOT))
    from tripletlib.synthetic import generate_synthetic_market

    root = args.work / ("data-tiny" if args.tiny else "data-market")
    started = time.perf_counter()
    if args.tiny:
        summary = generate_synthetic_market(root, train_ids=12, test_ids=8, progress=False)
    else:
        summary = generate_synthetic_market(
            root, preset="market", workers=os.cpu_count() or 1, progress=False
        )
    print(summary, flush=True)
    return {"root": str(root), "train_images": summary.train_images,
            "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip


def run_logged(command: list[str], limit: int, log_path: Path) -> tuple[int | str, float]:
    """Run `command` in the child environment under `limit` seconds, keep the end of its output
    in `log_path`; return its exit status ("timeout" when killed at the limit) and seconds."""
    started = time.perf_counter()
    try:
        completed = subprocess.run(command, env=child_environment(), capture_output=True,
                                   text=True, timeout=limit, check=False)  # fmt: skip
        status, log = completed.returncode, completed.stdout + completed.stderr
    except subprocess.TimeoutExpired as error:
        status = "timeout"
        log = (error.stdout or b"").decode() + (error.stderr or b"").decode()
    write(log_path, log[-200_000:])
    return status, round(time.perf_counter() - started, 1)


def train_starts(args) -> dict:
    """`scripts/make_starts.py` at the gpu profile's size (--tiny: the tiny book's) on the device;
    keeps its log and the starts' JSON records (the weights stay in --work)."""
    folder = args.work / "starts"
    size, width = ("64x32", "0.25") if args.tiny else ("256x128", "1")
    command = [sys.executable, str(ROOT / "scripts" / "make_starts.py"), "--work",
               str(args.work / "start-work"), "--out", str(folder), "--input-size", size,
               "--width", width, "--steps", str(2 if args.tiny else args.start_steps), "--quiet",
               "--workers", str(os.cpu_count() or 1)]  # fmt: skip
    if args.tiny:
        command += ["--pool-ids", "6"]
    status, seconds = run_logged(command, args.start_limit, args.out / "starts.log")
    records = {}
    for record in sorted(folder.glob("*.json")):
        files.write_bytes_atomic(args.out / f"start_{record.name}", record.read_bytes())
        records[record.name] = files.read_json(record, RERUN)
    print(f"starts: status {status} after {seconds} s (limit {args.start_limit} s)", flush=True)
    return {"status": status, "seconds": seconds, "folder": str(folder),
            "records": {name: {key: record.get(key) for key in ("steps", "loss", "seconds")}
                        for name, record in records.items()}}  # fmt: skip


def run_book(args) -> dict:
    """`tripletlib book --profile gpu` under --book-limit seconds; keeps the small outputs."""
    book_out = args.work / "book"
    data_root = args.work / ("data-tiny" if args.tiny else "data-market")
    command = [sys.executable, "-m", "tripletlib", "book", "--profile", "gpu", "--out",
               str(book_out), "--data", str(data_root),
               "--set", f"warm_start={(args.work / 'starts').resolve()}"]  # fmt: skip
    if args.tiny:
        command += ["--only", "00"] + [item for s in TINY_SETTINGS for item in ("--set", s)]
    status, seconds = run_logged(command, args.book_limit, args.out / "book.log")
    kept = args.out / "book"
    for pattern in ("book_run.json", "tables/*", "records/*.json", "runs/*/metrics.json",
                    "runs/*/history.csv", "runs/*/mining.json"):  # fmt: skip
        for path in book_out.glob(pattern):
            files.write_bytes_atomic(kept / path.relative_to(book_out), path.read_bytes())
    result = {"status": status, "seconds": seconds, "limit": args.book_limit}
    if (book_out / "book_run.json").is_file():
        result["notebook_seconds"] = files.read_json(book_out / "book_run.json", RERUN)["seconds"]
    print(f"book: status {status} after {seconds} s (limit {args.book_limit} s)", flush=True)
    return result


def run_row(args) -> dict:
    """Step 5 in a child process (a limit the compiled steps cannot outlive)."""
    command = [sys.executable, str(Path(__file__).resolve()), str(args.out), "--row-only",
               "--work", str(args.work), "--row-epochs", str(args.row_epochs)]  # fmt: skip
    if args.tiny:
        command.append("--tiny")
    run_logged(command, args.row_limit, args.out / "row.log")
    path = args.out / "row.json"
    result = files.read_json(path, RERUN, missing_ok=True) or {"finished": False}
    print(result.get("projection", "row: did not finish within --row-limit"), flush=True)
    return result


def timed_row(args) -> int:
    """Epoch 1, then epochs 2-N of the thesis row; writes OUT/row.json with the projection."""
    sys.path.insert(0, str(ROOT))
    from tripletlib import config
    from tripletlib.training import train_row

    settings = ROW_SETTINGS + [f"epochs={args.row_epochs}"]
    if args.tiny:
        settings += [s for s in TINY_SETTINGS if not s.startswith(("epochs=", "synthetic_"))]
    profile = config.resolve_profile("thesis", **config.parse_overrides(settings))
    data_root = args.work / ("data-tiny" if args.tiny else "data-market")
    out_dir = args.work / "row-resnet50-lossless-offline"
    common = {"profile": profile, "data_root": data_root, "out_dir": out_dir, "progress": False}
    first = train_row("resnet50", "lossless", "offline", stop_after_epochs=1, resume=False,
                      overwrite=True, **common)  # fmt: skip
    rest = train_row("resnet50", "lossless", "offline", **common)
    metrics = rest.metrics or {}
    steady = rest.phase_seconds.get("triplet fits", 0.0) / (args.row_epochs - 1)
    evaluation = rest.phase_seconds.get("evaluations", 0.0)
    # 200 epochs, the final evaluation, and the mining pass (a forward pass of the train set,
    # smaller than query + gallery: counted as a second evaluation).
    projected = THESIS_EPOCHS * steady + 2 * evaluation
    result = {
        "finished": rest.finished,
        "profile": profile.to_dict(),
        "first_epoch_seconds": round(first.phase_seconds.get("triplet fits", 0.0), 1),
        "epochs_2_to_n_seconds": round(rest.phase_seconds.get("triplet fits", 0.0), 1),
        "seconds_per_epoch": round(steady, 2),
        "evaluation_seconds": round(evaluation, 1),
        "images_per_second": metrics.get("images_per_second"),
        "setup": metrics.get("setup"),
        "trained": {key: metrics.get("trained", {}).get(key) for key in ("rank1", "mAP")},
        "projected_thesis_row_hours": round(projected / 3600, 2),
        "projection": (
            f"thesis row (ResNet-50 lossless offline, 2 x 100 epochs): {steady:.1f} s per epoch "
            f"over epochs 2-{args.row_epochs} -> about {projected / 3600:.2f} h on this machine "
            f"(the thesis: about 8 h per 100-epoch row on an RTX 2080 Ti, Section 4.2.1); "
            f"random weights, synthetic data"
        ),
    }
    result["train_images"] = len(list((data_root / "bounding_box_train").glob("*.jpg")))
    for name in ("metrics.json", "history.csv", "config.json", "mining.json"):
        if (out_dir / name).is_file():
            files.write_bytes_atomic(args.out / f"row_{name}", (out_dir / name).read_bytes())
    write(args.out / "row.json", json.dumps(result, indent=2))
    print(result["projection"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
