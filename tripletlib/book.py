"""Run the book: every `book/NN_*.ipynb` in order through papermill, then the thesis tables.

`tripletlib book --profile cpu --out results/` is the README's main command. Each notebook gets the
same parameters (PROFILE, DATA_ROOT, OUTPUT_DIR, SEED); trained models are shared between notebooks
through OUTPUT_DIR/runs/<row>/ (training returns a finished run instead of training it twice).
Layout of OUTPUT_DIR: notebooks/ (executed copies), tables/, figures/, runs/, records/, data/ and
.cache/ (the one cache of a book run: decoded images, warm starts, untrained evaluations).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"


class BookError(RuntimeError):
    """A book could not run: a notebook failed (the message names it, the cell and the executed
    copy), or `--out` holds another book."""


@dataclass
class BookResult:
    out_dir: Path
    notebooks: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    tables: dict[str, Path] = field(default_factory=dict)


def default_book_dir() -> Path:
    """The repository's `book/` folder (this package is installed editable from the repo)."""
    candidates = [Path.cwd() / "book", Path(__file__).resolve().parent.parent / "book"]
    for candidate in candidates:
        if any(candidate.glob(NOTEBOOK_GLOB)):
            return candidate
    raise FileNotFoundError(
        f"no book notebooks ({NOTEBOOK_GLOB}) found in {[str(c) for c in candidates]}; "
        "pass --book DIR"
    )


def list_notebooks(book_dir: str | Path, only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks in order; `only` keeps those whose name starts with a given prefix."""
    notebooks = sorted(Path(book_dir).glob(NOTEBOOK_GLOB))
    if only:
        notebooks = [nb for nb in notebooks if any(nb.name.startswith(p) for p in only)]
        if not notebooks:
            raise ValueError(f"no notebook in {book_dir} starts with any of {only}")
    if not notebooks:
        raise FileNotFoundError(f"no notebooks matching {NOTEBOOK_GLOB} in {book_dir}")
    return notebooks


def run_book(
    profile: str = "cpu",
    out_dir: str | Path = "results",
    data_root: str | Path | None = None,
    book_dir: str | Path | None = None,
    seed: int = 0,
    only: list[str] | None = None,
    progress: bool = True,
    cell_timeout: int | None = None,
    overrides: dict | None = None,
) -> BookResult:
    """Execute the notebooks with papermill, keep the executed copies, write tables 4.1-4.4.

    `overrides` changes fields of the profile (`config.resolve_profile(profile, **overrides)`,
    checked before the first notebook); every notebook then gets PROFILE =
    {"name": profile, "overrides": overrides} (`config.profile_from_parameter`).

    `cell_timeout` (seconds) fails a cell that runs longer, so that a hung kernel cannot stall a
    batch forever; None waits as long as the cell needs (the thesis profile trains for hours).
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from tripletlib import files, models
    from tripletlib.config import BACKBONE_CHOICES, resolve_profile
    from tripletlib.pretraining import check_profile_starts
    from tripletlib.tables import load_run_metrics, table_runs, write_thesis_tables

    # An unknown name, a bad value (weights=foo) or a missing label-free start: nothing is written.
    resolved = resolve_profile(profile, **(overrides or {}))
    check_profile_starts(resolved)
    for backbone in BACKBONE_CHOICES:
        models.check_embedder_options(backbone, **resolved.embedder_options())
    out_dir = Path(out_dir).resolve()
    with files.folder_lock(out_dir, f"book --profile {profile}"):  # one command at a time
        _check_same_book(out_dir, profile, overrides or {}, seed)
        book_dir = Path(book_dir) if book_dir else default_book_dir()
        notebooks = list_notebooks(book_dir, only)
        executed_dir = out_dir / "notebooks"
        executed_dir.mkdir(parents=True, exist_ok=True)
        parameters = {
            "PROFILE": {"name": profile, "overrides": overrides} if overrides else profile,
            "DATA_ROOT": str(Path(data_root).resolve()) if data_root else None,
            "OUTPUT_DIR": str(out_dir),
            "SEED": seed,
        }
        result = BookResult(out_dir=out_dir)
        started = time.perf_counter()
        for number, notebook in enumerate(notebooks, start=1):
            target = executed_dir / notebook.name
            if progress:
                print(f"[{number}/{len(notebooks)}] {notebook.name} ...", flush=True)
            notebook_start = time.perf_counter()
            try:
                papermill.execute_notebook(
                    str(notebook),
                    str(target),
                    parameters=parameters,
                    kernel_name="python3",
                    progress_bar=False,
                    cwd=str(book_dir),
                    execution_timeout=cell_timeout,
                    # The kernel's own log lines (ipykernel's "running over TCP without encryption"
                    # warning, once per notebook); a failing cell or a dead kernel still raises.
                    extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
                )
            except PapermillExecutionError as error:
                raise BookError(
                    f"{notebook.name} failed in cell {error.exec_count} "
                    f"({error.ename}: {error.evalue}); the executed copy is {target}"
                ) from error
            elapsed = time.perf_counter() - notebook_start
            result.notebooks.append(target)
            result.seconds[notebook.name] = round(elapsed, 1)
            if progress:
                print(f"    done in {elapsed:.0f} s", flush=True)

        runs = table_runs(load_run_metrics(sorted((out_dir / "runs").glob("*/metrics.json"))))
        baseline_path = out_dir / "baseline.json"  # written by the notebooks (Workspace)
        baseline = files.read_json(
            baseline_path, "run the book again (Workspace.baseline_metrics writes it)",
            missing_ok=True,
        )  # fmt: skip
        from tripletlib.runs import re_ranked_by_row  # notebook 06 stores the final row's

        result.tables = write_thesis_tables(
            runs, out_dir / "tables", baseline=baseline, re_ranked=re_ranked_by_row(runs)
        )
        total = time.perf_counter() - started
        files.write_json_atomic(
            out_dir / "book_run.json",
            {"profile": profile, "overrides": overrides or {}, "seed": seed,
             "seconds": result.seconds, "total_seconds": total},  # fmt: skip
            sort_keys=False,
        )
        if progress:
            print(f"book finished in {total / 60:.1f} min; tables in {out_dir / 'tables'}")
        return result


def _check_same_book(out_dir: Path, profile: str, overrides: dict, seed: int) -> None:
    """Refuse an `out_dir` that holds the book of another profile, overrides or seed (its
    book_run.json): running there would replace that book's notebooks, tables and records."""
    record_path = out_dir / "book_run.json"
    if not record_path.is_file():
        return
    from tripletlib import files

    way_out = "remove it (or choose another --out) to run a book there"
    try:
        record = files.read_json(record_path, way_out)
        with files.reading(record_path, way_out):
            earlier = (record["profile"], record.get("overrides") or {}, record["seed"])
    except files.DamagedFileError as error:
        raise BookError(str(error)) from None
    if earlier != (profile, overrides, seed):
        raise BookError(
            f"{out_dir} holds the book of profile {earlier[0]!r} (overrides {earlier[1]}, seed "
            f"{earlier[2]}); choose another --out, or remove that folder to replace it"
        )
