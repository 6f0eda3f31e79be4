"""Run folders (`tripletlib train --out DIR`): their files, keys, metrics and cached results.

A run folder holds `config.json`, `history.csv` (columns `HISTORY_COLUMNS`), `checkpoints/`,
`mining.json` (offline rows), `embedder.weights.h5`, `embeddings.npz` and `metrics.json`
(`RunMetrics`: its fields are the schema, `RunMetrics.validate` checks a file against it, and
`tables` reads through it). This module reads and writes them and never trains: `training`
writes a run through it, the notebooks and `tripletlib evaluate` read one back.

- `load_embedder(run_dir)`: the trained embedder, rebuilt from config.json.
- `cached_embeddings` / `store_embeddings`: a row's embeddings, kept under a key of the weights
  file and the images (`embeddings_key`).
- `embed_and_evaluate`: the one evaluation of an embedder (embed the query and the gallery, then
  `evaluation.evaluate_embeddings`), used by training, `tripletlib evaluate` and the notebooks;
  `evaluate_embedder` / `cached_evaluation` keep its metrics.json record under `evaluation_key`.
- `evaluate_saved_model`: `tripletlib evaluate`, exact search or Annoy (Section 3.3.2), and with
  `re_rank` the k-reciprocal re-ranked metrics beside (`stored_re_ranked` reads them back).
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tripletlib import (
    checks,
    config,
    data,
    devices,
    evaluation,
    files,
    models,
    reranking,
    retrieval,
)
from tripletlib.files import write_json_atomic

HISTORY_COLUMNS = ("epoch", "loss", "val_loss", "learning_rate", "iteration")
METRIC_KEYS = ("rank1", "rank5", "mAP", "cmc", "num_valid_queries")
TABLE_METRICS = config.TABLE_METRICS
EMBEDDINGS_FILE = "embeddings.npz"
MINING_FILE = "mining.json"  # offline rows: what each mining pass found
WEIGHTS_FILE = "embedder.weights.h5"
# What a run writes besides config.json; a new run (another config, or resume=False) removes them.
RUN_FILES = (
    "checkpoints", "history.csv", "metrics.json", MINING_FILE, WEIGHTS_FILE, EMBEDDINGS_FILE,
)  # fmt: skip


# --- files --------------------------------------------------------------------------------------
RESTART = "run `tripletlib train` again with --restart (resume=False) to train the run anew"
RETRAIN = "train the run again (`tripletlib train --out` that folder with --restart)"


def read_json(path: Path, way_out: str = RESTART) -> Any:
    """The JSON value in `path`, or None when there is no such file; a damaged file is one
    `files.DamagedFileError` naming it and `way_out`."""
    return files.read_json(path, way_out, missing_ok=True)


def write_json(path: Path, value: Any) -> None:
    """Write through a temporary file, so that an interruption never leaves half a file."""
    write_json_atomic(path, value)


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: not a folder written by tripletlib train")
    return files.read_json(path, RETRAIN)


def run_profile(run_config: dict[str, Any]) -> config.Profile:
    return config.Profile(**run_config["profile"])


def check_run_folder(out_dir: Path, run_config: dict[str, Any], overwrite: bool) -> None:
    """Refuse, before anything is read or written, an `out_dir` that is not ours to write: a
    file, a non-empty folder that is not a run, a run of another config (unless `overwrite`)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file; expected a run folder (new, empty, or a run)")
    if not out_dir.is_dir() or not any(p.name != files.LOCK_FILE for p in out_dir.iterdir()):
        return  # new, or empty but for the lock of the command checking it (files.folder_lock)
    config_path = out_dir / "config.json"
    try:
        existing = read_json(config_path, "pass --overwrite (overwrite=True) to replace the run")
    except files.DamagedFileError:
        if not overwrite:
            raise
        print(f"{out_dir}: replacing a run whose config.json is damaged")
        return
    if existing is None:
        raise ValueError(
            f"--out {out_dir} is not empty and holds no config.json of a tripletlib run, so it is "
            "left alone; choose another folder (new or empty)"
        )
    changed = sorted(key for key in {**existing, **run_config}
                     if existing.get(key) != run_config.get(key))  # fmt: skip
    if changed and overwrite:
        print(f"{out_dir}: replacing a run of another config ({', '.join(changed)} differ)")
    elif changed:
        raise ValueError(
            f"--out {out_dir} holds a run of another config ({', '.join(changed)} differ); pass "
            "--overwrite (overwrite=True) to replace it, or choose another folder (the same "
            "config would be resumed)"
        )


def prepare_run_folder(out_dir: Path, run_config: dict[str, Any], resume: bool) -> None:
    """Write config.json; discard what an earlier run left there unless it is resumed (same
    config and a checkpoint to resume from). `check_run_folder` has allowed it."""
    try:
        existing = read_json(out_dir / "config.json")
    except files.DamagedFileError:
        existing = None  # check_run_folder let it through: --overwrite replaces it
    for leftover in files.leftover_temporary_files(out_dir) if out_dir.is_dir() else []:
        leftover.unlink()  # half-written by a killed run; the file it was meant to replace holds
    has_checkpoint = (out_dir / "checkpoints" / "latest.json").is_file()
    if existing != run_config or not resume or not has_checkpoint:
        for name in RUN_FILES + tuple(p.name for p in out_dir.glob("evaluation_*.json")):
            path = out_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "config.json", run_config)


def truncate_history(path: Path, epochs_completed: int) -> None:
    """Drop rows of epochs after the checkpoint (written just before an interruption)."""
    if path.is_file():
        with files.reading(path, RESTART):
            lines = path.read_text().splitlines()
            kept = lines[:1] + [
                line for line in lines[1:] if int(line.split(",")[0]) < epochs_completed
            ]
        files.write_text_atomic(path, "".join(line + "\n" for line in kept))


def save_hard_negatives(path: Path, hard_negatives: dict[int, np.ndarray]) -> None:
    """Offline mining's hard negatives (anchor row -> negative rows) as one .npz file."""
    anchors = np.array(sorted(hard_negatives), dtype=np.int64)
    counts = np.array([len(hard_negatives[a]) for a in anchors], dtype=np.int64)
    rows = np.concatenate([hard_negatives[a] for a in anchors] + [np.empty(0, np.int64)])
    files.save_npz_atomic(path, anchors=anchors, counts=counts, rows=rows)


def hard_negatives_path(run_dir: Path, iteration: int) -> Path:
    """Where the hard negatives mined before offline iteration `iteration` are kept."""
    return Path(run_dir) / "checkpoints" / f"hard_negatives_iteration{iteration}.npz"


def record_mining(run_dir: Path, iteration: int, record: dict[str, Any]) -> Path:
    """Keep what the mining before `iteration` found in `run_dir/mining.json` (one entry per
    iteration; a resumed run's second pass replaces the first)."""
    path = Path(run_dir) / MINING_FILE
    records = [entry for entry in (read_json(path) or []) if entry["iteration"] != iteration]
    write_json(path, [*records, {"iteration": iteration, **record}])
    return path


def load_hard_negatives(path: Path) -> dict[int, np.ndarray]:
    stored = files.load_npz(path, RESTART)
    with files.reading(path, RESTART):
        anchors, counts, rows = stored["anchors"], stored["counts"], stored["rows"]
    ends = np.cumsum(counts)
    return {int(a): rows[e - n : e] for a, n, e in zip(anchors, counts, ends, strict=True)}


# --- metrics.json -------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunMetrics:
    """`metrics.json` of a finished run. Each evaluation ("untrained": the random initial
    weights; "pretrained": the start alone, only with `Profile.warm_start`; "trained") holds
    `METRIC_KEYS`; "pretraining" is the start's record. `train_seconds` counts the triplet
    training and mining."""

    row: str
    backbone: str
    loss: str
    mining: str
    profile: str
    dataset: str
    data_root: str
    protocol: str
    seed: int
    trained: dict[str, Any]
    untrained: dict[str, Any]
    train_seconds: float
    images_per_second: float
    pretrained: dict[str, Any] | None = None
    pretraining: dict[str, Any] | None = None
    # How it used the hardware (`devices.describe`): backend, devices, precision, device-resident
    # batches and how many devices split each batch; None in runs that did not record it.
    setup: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object; "pretrained" and "pretraining" only for a row with a start."""
        values = dataclasses.asdict(self)
        return {k: v for k, v in values.items() if v is not None or k not in OPTIONAL_METRICS}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunMetrics:
        return cls(**values)

    @classmethod
    def required_fields(cls) -> tuple[str, ...]:
        """The keys every metrics.json has: the fields without a default."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING)

    @classmethod
    def validate(cls, values: Any, source: str) -> dict[str, Any]:
        """`values` checked against this schema (`source` names it in errors): every required
        field, non-empty names, and the trained Rank-1 / Rank-5 / mAP as fractions in [0, 1].
        Keys beyond the schema are kept (`tables.load_run_metrics` reads them too)."""
        if not isinstance(values, dict):
            raise ValueError(f"{source}: expected a JSON object, got {type(values).__name__}")
        missing = [key for key in cls.required_fields() if key not in values]
        if missing:
            raise ValueError(
                f"{source}: missing key(s) {missing}; a metrics file needs "
                f"{list(cls.required_fields())}"
            )
        for key in ("row", "dataset", "profile", "protocol"):
            if not isinstance(values[key], str) or not values[key].strip():
                raise ValueError(f"{source}: {key!r} must be a non-empty string, got {values[key]!r}")
        trained = values["trained"]
        if not isinstance(trained, dict):
            raise ValueError(f"{source}: 'trained' must be an object with {list(TABLE_METRICS)}")
        missing = [key for key in TABLE_METRICS if key not in trained]
        if missing:
            raise ValueError(f"{source}: 'trained' is missing key(s) {missing}")
        for key in TABLE_METRICS:
            if not checks.is_fraction(trained[key]):
                raise ValueError(
                    f"{source}: trained[{key!r}] must be a fraction in [0, 1], got {trained[key]!r}"
                )
        return dict(values)

    @classmethod
    def read(cls, run_dir: str | Path) -> RunMetrics:
        path = Path(run_dir) / "metrics.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: the run in {run_dir} did not finish")
        values = cls.validate(files.read_json(path, RETRAIN), str(path))
        with files.reading(path, RETRAIN):  # keys beyond the schema
            return cls.from_dict(values)

    def write(self, run_dir: str | Path) -> Path:
        path = Path(run_dir) / "metrics.json"
        write_json(path, self.to_dict())
        return path

    def gain_over_start(self) -> float:
        """`gain_over_start` of this run."""
        return gain_over_start(self.to_dict())


OPTIONAL_METRICS = ("pretrained", "pretraining", "setup")


def start_state(metrics: dict[str, Any]) -> str:
    """The evaluation of a metrics.json that its row started from: "pretrained" (the start alone,
    ImageNet's stand-in) where the row had a start, else "untrained" (random weights)."""
    return "pretrained" if metrics.get("pretrained") else "untrained"


def gain_over_start(metrics: dict[str, Any]) -> float:
    """What the triplet training added: trained test mAP minus the mAP of the row's start
    (`start_state`), as a fraction (0.3: 30 points)."""
    return metrics["trained"]["mAP"] - metrics[start_state(metrics)]["mAP"]


# --- the trained embedder and its embeddings ----------------------------------------------------
def load_embedder(run_dir: str | Path, precision: str | None = None) -> keras.Model:
    """The trained embedder of a run folder: rebuilt from config.json, weights from the run,
    under the run's dtype policy or `precision` (`devices.PRECISIONS`) when given."""
    run_dir = Path(run_dir)
    run_config = read_run_config(run_dir)
    weights = run_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} does not exist: the run in {run_dir} did not finish")
    # The trained weights replace the backbone's initial ones, so nothing is downloaded here.
    with files.reading(run_dir / "config.json", RETRAIN):
        profile, backbone = run_profile(run_config), run_config["backbone"]
    options = profile.embedder_options(weights=None)
    with devices.precision(precision or profile.precision):  # embeddings stay float32
        embedder = models.build_embedder(backbone, **options)
    files.load_weights(embedder, weights, RETRAIN)
    return embedder


def embeddings_key(weights: Path, arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of a weights file and of named image arrays (names, dtypes, shapes, bytes)."""
    digest = hashlib.sha256(Path(weights).read_bytes())
    files.update_digest(digest, sorted(arrays.items()))
    return digest.hexdigest()


def store_embeddings(
    run_dir: str | Path, arrays: dict[str, np.ndarray], embeddings: dict[str, np.ndarray]
) -> Path:
    """Write `run_dir/embeddings.npz`: `embeddings[name]` of `arrays[name]` by the run's weights."""
    run_dir = Path(run_dir)
    if sorted(arrays) != sorted(embeddings):
        raise ValueError(f"embeddings for {sorted(embeddings)} but images for {sorted(arrays)}")
    for name, values in embeddings.items():
        if len(values) != len(arrays[name]):
            raise ValueError(
                f"{name}: {len(values)} embeddings for {len(arrays[name])} images in {run_dir}"
            )
    key = embeddings_key(run_dir / WEIGHTS_FILE, arrays)
    path = run_dir / EMBEDDINGS_FILE
    return files.save_npz_atomic(
        path, key=np.array(key), **{f"embeddings_{n}": v for n, v in embeddings.items()}
    )


def cached_embeddings(
    run_dir: str | Path, arrays: dict[str, np.ndarray], batch_size: int = 128
) -> dict[str, np.ndarray]:
    """Embeddings of each image array in `arrays` by a run's trained embedder, kept on disk.

    Stored in `run_dir/embeddings.npz` (by `train_row` for the test split, or here) under a key of
    the weights file and of the images (`embeddings_key`): the book's notebooks embed a row's
    query and gallery once, not once each. A key that differs (retrained weights, other images)
    recomputes and replaces the file.
    """
    run_dir = Path(run_dir)
    weights = run_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} does not exist: the run in {run_dir} did not finish")
    path = run_dir / EMBEDDINGS_FILE
    if path.is_file():
        try:  # a cache: a damaged one is computed again and replaced
            stored = files.load_npz(path, "it is computed again")
        except files.DamagedFileError:
            stored = {}
        names = {f"embeddings_{name}" for name in arrays}
        if names <= set(stored) and str(stored["key"]) == embeddings_key(weights, arrays):
            return {name: stored[f"embeddings_{name}"] for name in arrays}
    embedder = load_embedder(run_dir)
    result = {
        name: models.embed_images(embedder, values, batch_size) for name, values in arrays.items()
    }
    store_embeddings(run_dir, arrays, result)
    return result


# --- evaluations --------------------------------------------------------------------------------
def evaluation_record(result: evaluation.EvaluationResult) -> dict[str, Any]:
    """The `METRIC_KEYS` of an evaluation, as metrics.json stores each state of a row."""
    values = result.to_dict()
    return {key: values[key] for key in METRIC_KEYS}


@dataclass(frozen=True)
class Evaluated:
    """An embedder's evaluation on a query and a gallery: the result, the embeddings it ranked
    ("query", "gallery") and the seconds of the search and the ranking alone."""

    result: evaluation.EvaluationResult
    embeddings: dict[str, np.ndarray]
    search_seconds: float


def embed_and_evaluate(
    embedder: keras.Model,
    query: data.Split,
    gallery: data.Split,
    *,
    batch_size: int = 128,
    progress: bool = False,
    **options: Any,
) -> Evaluated:
    """The package's one evaluation of an embedder (Section 4.1): embed the query and the gallery
    (`models.embed_images`), then `evaluation.evaluate_embeddings` with `options` (``search``,
    ``protocol``, ``re_rank``, the Annoy settings). Training, `tripletlib evaluate` and the
    book's rows all go through it."""
    embeddings = {
        name: models.embed_images(embedder, split.images, batch_size, progress=progress)
        for name, split in (("query", query), ("gallery", gallery))
    }
    started = time.perf_counter()
    result = evaluation.evaluate_embeddings(
        embeddings["query"], embeddings["gallery"], query, gallery, **options
    )
    return Evaluated(result, embeddings, time.perf_counter() - started)


def evaluate_embedder(
    embedder: keras.Model,
    query: data.Split,
    gallery: data.Split,
    batch_size: int = 128,
    re_rank: bool = False,
) -> dict[str, Any]:
    """Rank-1, Rank-5, mAP, CMC and valid queries, exact search, Market protocol (Section 4.1),
    as metrics.json keeps them (`embed_and_evaluate`, `evaluation_record`); ``re_rank``: ranked
    by k-reciprocal re-ranked distances (`tripletlib.reranking`)."""
    evaluated = embed_and_evaluate(embedder, query, gallery, batch_size=batch_size, re_rank=re_rank)
    return evaluation_record(evaluated.result)


def evaluation_key(embedder: keras.Model, query: data.Split, gallery: data.Split) -> str:
    """SHA-256 of the backend, the embedder's weights and the query and gallery (images, ids)."""
    digest = hashlib.sha256(keras.backend.backend().encode())
    files.update_digest(digest, ((w.path, keras.ops.convert_to_numpy(w)) for w in embedder.weights))
    for name, split in (("query", query), ("gallery", gallery)):
        files.update_digest(digest, (
            (f"{name}_{field}", getattr(split, field))
            for field in ("images", "person_ids", "camera_ids")
        ))  # fmt: skip
    return digest.hexdigest()


def cached_evaluation(
    embedder: keras.Model,
    query: data.Split,
    gallery: data.Split,
    cache_dir: Path,
    batch_size: int = 128,
) -> dict[str, Any]:
    """`evaluate_embedder`, kept in `cache_dir/<evaluation_key>.json`.

    The rows of one backbone build the same random embedder from the same seed and load the same
    start, so their "untrained" and "pretrained" evaluations are the same numbers: the
    first row computes them, the others read them. Other weights or images: another key.
    """
    path = Path(cache_dir) / f"{evaluation_key(embedder, query, gallery)}.json"
    try:  # a cache: a damaged entry is computed again and replaced
        stored = read_json(path)
    except files.DamagedFileError:
        stored = None
    if stored is not None:
        return stored
    result = evaluate_embedder(embedder, query, gallery, batch_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, result)
    return result


def evaluate_saved_model(
    run_dir: str | Path,
    data_root: str | Path,
    search: str = "exact",
    protocol: str = "market",
    annoy_neighbours: int = 100,
    progress: bool = True,
    save: bool = True,
    re_rank: bool = False,
    cache_dir: str | Path | None = None,
    write_cache: bool = True,
    annoy_trees: int = retrieval.ANNOY_N_TREES,
    annoy_search_k: int = retrieval.ANNOY_SEARCH_K,
) -> dict[str, Any]:
    """`tripletlib evaluate`: metrics of a trained run on `data_root`'s query and gallery, exact
    search or Annoy (`retrieval.distance_matrix`; `annoy_trees` and `annoy_search_k`, recorded
    in the metrics of an Annoy search); with `save` also written beside the model
    (`save_evaluation`; ``metrics["path"]``). The command line prints before it saves.
    `search_seconds` times the search and the ranking. Decoded images are kept in `cache_dir`
    (None: no cache; `write_cache=False`: an existing cache is read, nothing is written).

    ``re_rank`` (exact search only) adds ``metrics["re_ranked"]``: the same metrics ranked by
    k-reciprocal re-ranked distances (`tripletlib.reranking`, the paper's k1, k2 and lambda) and
    their ``re_rank_seconds``; the plain metrics stay at the top level."""
    if search not in ("exact", "annoy"):
        raise ValueError(f"search must be 'exact' or 'annoy', got {search!r}")
    if re_rank and search != "exact":
        raise ValueError(f"re_rank needs search='exact', got search={search!r}")
    run_dir = Path(run_dir)
    embedder = load_embedder(run_dir)  # checks config.json and the weights
    profile = run_profile(read_run_config(run_dir))
    splits = data.load_splits(
        data_root, profile.image_height, profile.image_width, cache_dir=cache_dir,
        splits=("gallery", "query"), progress=progress, write_cache=write_cache,
    )  # fmt: skip
    query, gallery = splits["query"], splits["gallery"]
    evaluated = embed_and_evaluate(
        embedder, query, gallery, progress=progress, protocol=protocol, search=search, annoy_neighbours=annoy_neighbours,
        annoy_trees=annoy_trees, annoy_search_k=annoy_search_k,
    )  # fmt: skip
    result, search_seconds = evaluated.result, evaluated.search_seconds
    query_embeddings, gallery_embeddings = (evaluated.embeddings[n] for n in ("query", "gallery"))
    metrics = result.to_dict()
    metrics.update(
        search=search,
        protocol=protocol,
        search_seconds=round(search_seconds, 3),
        dataset=data.dataset_kind(data_root),
        data_root=str(Path(data_root).resolve()),
    )
    if re_rank:
        started = time.perf_counter()
        re_ranked = evaluation.evaluate_embeddings(
            query_embeddings, gallery_embeddings, query, gallery, protocol=protocol, re_rank=True
        ).to_dict()
        re_ranked["re_rank_seconds"] = round(time.perf_counter() - started, 3)
        metrics["re_ranked"] = {**re_ranked, **reranking.SETTINGS}
    if search == "annoy":
        metrics.update(
            annoy_trees=int(annoy_trees),
            annoy_search_k=int(annoy_search_k),
            annoy_neighbours=int(annoy_neighbours),
        )
    if save:
        metrics["path"] = str(save_evaluation(run_dir, metrics))
    return metrics


def evaluation_path(run_dir: str | Path, data_root: str | Path, search: str, protocol: str) -> Path:
    """``run_dir/evaluation_<dataset>-<digest>_<search>_<protocol>.json``: one file per dataset
    (its folder name and 8 hex digits of its resolved path), search and protocol."""
    root = Path(data_root).expanduser().resolve()
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:8]
    return Path(run_dir) / f"evaluation_{root.name}-{digest}_{search}_{protocol}.json"


def save_evaluation(run_dir: str | Path, metrics: dict[str, Any]) -> Path:
    """Write `evaluate_saved_model`'s metrics to `evaluation_path` (one file per dataset); the
    "re_ranked" metrics an earlier ``--re-rank`` left in that file are kept when these have none
    (the same weights and images: a new run removes the file, `prepare_run_folder`)."""
    path = evaluation_path(run_dir, metrics["data_root"], metrics["search"], metrics["protocol"])
    values = {key: value for key, value in metrics.items() if key != "path"}
    earlier = read_json(path) if "re_ranked" not in values else None
    if isinstance(earlier, dict) and "re_ranked" in earlier:
        values["re_ranked"] = earlier["re_ranked"]
    return write_json_atomic(path, values, sort_keys=False)


def stored_re_ranked(
    run_dir: str | Path, data_root: str | Path, protocol: str = "market"
) -> dict[str, Any] | None:
    """The "re_ranked" metrics `tripletlib evaluate --re-rank` saved for a run on `data_root`
    (exact search, `protocol`), or None when there are none."""
    stored = read_json(evaluation_path(run_dir, data_root, "exact", protocol))
    return stored.get("re_ranked") if isinstance(stored, dict) else None


def re_ranked_by_row(
    run_metrics: list[dict[str, Any]], data_root: str | Path | None = None
) -> dict[str, dict[str, Any]]:
    """Row -> stored re-ranked metrics (`stored_re_ranked`) of the runs that have them on
    `data_root` (default: each run's own), for `tables.build_thesis_tables(re_ranked=...)`; each
    run as `tables.load_run_metrics` reads it (its folder is that of its ``metrics_path``)."""
    found = {}
    for run in run_metrics:
        run_dir = Path(run["metrics_path"]).parent
        stored = stored_re_ranked(run_dir, data_root or run["data_root"], run["protocol"])
        if stored is not None:
            found[run["row"]] = stored
    return found

