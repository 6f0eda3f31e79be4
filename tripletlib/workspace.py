"""What the book's notebooks share: one dataset, one set of trained rows, figures and records.

A notebook opens `Workspace(PROFILE, DATA_ROOT, OUTPUT_DIR, SEED)` from its parameters cell and asks it
for what it needs; anything expensive (generating the synthetic dataset, decoding images, training a
row) is done once and found again by the next notebook under OUTPUT_DIR. Everything a book run
caches (decoded images, untrained and start evaluations) lives in one folder, OUTPUT_DIR/.cache;
the rows train into OUTPUT_DIR/runs/<row>/.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tripletlib import config, data, files, viz


@dataclass
class Workspace:
    # A profile name, or {"name": NAME, "overrides": {field: value}} (`tripletlib book --set`).
    profile_name: str | dict[str, Any] = "ci"
    data_root: str | Path | None = None
    output_dir: str | Path = "../results/ci"
    seed: int = 0
    progress: bool = False
    _splits: dict[str, data.Split] = field(default_factory=dict, repr=False)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.output_dir = Path(self.output_dir).resolve()
        self.output_dir.mkdir(parents=True, exist_ok=True)

    @cached_property
    def profile(self) -> config.Profile:
        return config.profile_from_parameter(self.profile_name)

    @property
    def dataset_root(self) -> Path:
        if self.data_root:
            return Path(self.data_root)
        return self.output_dir / "data" / f"synthetic-{self.profile.name}-seed{self.seed}"

    @property
    def dataset_kind(self) -> str:
        return data.dataset_kind(self.dataset_root)

    def ensure_dataset(self) -> Path:
        """The dataset folder; the synthetic one of this profile is generated on first use (and
        again when its generation was interrupted)."""
        root = self.dataset_root
        if self.data_root:
            if not root.is_dir():
                raise FileNotFoundError(f"DATA_ROOT {root} does not exist (a Market-1501 folder)")
            return root
        from tripletlib.data import read_synthetic_marker

        marker = read_synthetic_marker(root)
        if marker is None or not marker.get("complete"):  # none yet, or an interrupted one
            from tripletlib.synthetic import generate_synthetic_market

            generate_synthetic_market(
                root,
                train_ids=self.profile.synthetic_train_ids,
                test_ids=self.profile.synthetic_test_ids,
                seed=self.profile.synthetic_seed + self.seed,
                preset=self.profile.synthetic_preset,
                progress=self.progress,
            )
        return root

    @cached_property
    def metadata(self) -> pd.DataFrame:
        from tripletlib.data import load_market1501

        return load_market1501(self.ensure_dataset())

    @property
    def cache_dir(self) -> Path:
        """The book run's one cache: decoded images and the untrained and start evaluations."""
        return self.output_dir / ".cache"

    def split(self, name: str) -> data.Split:
        """Images (profile size), ids and metadata rows of "train", "gallery" or "query"
        (`data.load_splits`: the same arrays the rows train and are evaluated on)."""
        if name not in self._splits:
            self._splits[name] = data.load_splits(
                self.ensure_dataset(), self.profile.image_height, self.profile.image_width,
                cache_dir=self.cache_dir, splits=(name,), metadata=self.metadata,
                progress=self.progress,
            )[name]  # fmt: skip
        return self._splits[name]

    def run_dir(self, row: str) -> Path:
        return self.output_dir / "runs" / row

    def train_row(self, row: str, progress: bool | None = None) -> dict[str, Any]:
        """Train one row of tables 4.1-4.3 (or find it trained) and return its metrics; a row
        this book trained with an older recipe (e.g. another shipped start) is trained again."""
        from tripletlib.training import train_row

        backbone, loss, mining = config.parse_row(row)
        data_root = self.ensure_dataset()
        train_row(
            backbone,
            loss,
            mining,
            self.profile,
            data_root=data_root,
            out_dir=self.run_dir(row),
            seed=self.seed,
            cache_dir=self.cache_dir,
            progress=self.progress if progress is None else progress,
            overwrite=self._older_recipe(row, data_root),
        )
        return self.run_metrics(row)

    def _older_recipe(self, row: str, data_root: Path) -> bool:
        """Whether the row's folder holds this book's row (same profile name, seed and data) made
        with an older recipe (profile fields, shipped start): then it is trained again. A
        run of another profile, seed or dataset is left alone (train_row refuses it by name)."""
        path = self.run_dir(row) / "config.json"
        try:
            existing = files.read_json(path, "train_row decides")
        except (OSError, ValueError):
            return False  # no run there, or not ours: train_row decides
        return isinstance(existing, dict) and (
            existing.get("profile", {}).get("name") == self.profile.name
            and existing.get("seed") == self.seed
            and existing.get("data_root") == str(Path(data_root).expanduser().resolve())
        )

    def run_metrics(self, row: str) -> dict[str, Any]:
        path = self.run_dir(row) / "metrics.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: train the row {row!r} first")
        return files.read_json(path, f"train the row {row!r} again (delete {path.parent})")

    def learning_report(self, rows: list[str] | tuple[str, ...], min_gain: float = 0.0) -> str:
        """What each row's triplet training added to its start, one line per row: the start's
        test mAP (the label-free start alone, or random weights), the trained one, and whether
        the gain reaches `min_gain` mAP points (`runs.gain_over_start`)."""
        from tripletlib.runs import gain_over_start, start_state

        lines = []
        for row in rows:
            metrics = self.run_metrics(row)
            state = start_state(metrics)
            start = "start alone" if state == "pretrained" else "random weights"
            gain = 100 * gain_over_start(metrics)
            lines.append(
                f"{row}: mAP {100 * metrics[state]['mAP']:.1f} ({start}) -> "
                f"{100 * metrics['trained']['mAP']:.1f} trained, {gain:+.1f} points; "
                f"at least {min_gain:+.1f}: {gain >= min_gain}"
            )
        return "\n".join(lines)

    def results_table(self, rows: list[str] | tuple[str, ...]) -> pd.DataFrame:
        """Rank-1 / Rank-5 / mAP (%) of trained rows, one line each: untrained (random weights),
        the start alone ("start", profiles with `warm_start`), trained, and what the training
        added to its start ("gain mAP")."""
        from tripletlib.runs import gain_over_start

        lines = []
        for row in rows:
            metrics = self.run_metrics(row)
            line = {"row": row, "dataset": metrics["dataset"], "profile": metrics["profile"]}
            states = (
                ("untrained", "untrained", ("rank1", "mAP")),
                ("pretrained", "start", ("rank1", "mAP")),
                ("trained", "trained", ("rank1", "rank5", "mAP")),
            )
            for state, label, keys in states:
                if metrics.get(state):
                    line.update({f"{label} {key}": round(100 * metrics[state][key], 1) for key in keys})
            line["gain mAP"] = round(100 * gain_over_start(metrics), 1)
            line["train minutes"] = round(metrics["train_seconds"] / 60, 1)
            lines.append(line)
        return pd.DataFrame(lines).set_index("row")

    def baseline_metrics(self) -> dict[str, Any]:
        """The hand-crafted colour descriptor (`tripletlib.baseline`, no learning) on this run's
        query and gallery, Market protocol; kept in OUTPUT_DIR/baseline.json for the tables."""
        path = self.output_dir / "baseline.json"
        key = {"data_root": str(self.ensure_dataset().resolve()), "profile": self.profile.name}
        try:  # a cache: a damaged one is computed again and replaced
            stored = files.read_json(path, "it is computed again", missing_ok=True)
        except files.DamagedFileError:
            stored = None
        if isinstance(stored, dict):
            if {name: stored.get(name) for name in key} == key:
                return stored
        from tripletlib import baseline

        result = baseline.evaluate_baseline(self.split("query"), self.split("gallery"))
        stored = {**json.loads(json.dumps(result, default=_to_json)), **key,
                  "dataset": self.dataset_kind}  # fmt: skip
        files.write_json_atomic(path, stored)
        return stored

    def baseline_comparison(self, rows: list[str] | tuple[str, ...]) -> pd.DataFrame:
        """Rank-1 and mAP (%) of the hand-crafted baseline and of each trained row, and whether the
        row's mAP beats the baseline's (the bar: every row above it)."""
        reference = self.baseline_metrics()
        lines = [{"model": "hand-crafted (no learning)", "Rank-1": 100 * reference["rank1"],
                  "mAP": 100 * reference["mAP"], "beats the baseline's mAP": None}]  # fmt: skip
        for row in rows:
            trained = self.run_metrics(row)["trained"]
            lines.append({"model": row, "Rank-1": 100 * trained["rank1"],
                          "mAP": 100 * trained["mAP"],
                          "beats the baseline's mAP": trained["mAP"] > reference["mAP"]})  # fmt: skip
        return pd.DataFrame(lines).set_index("model").round(1)

    def thesis_tables(self) -> dict[str, pd.DataFrame]:
        """Tables 4.1-4.4: the thesis' numbers, ours, and the hand-crafted baseline's row (rows
        without a table line, as notebook 05's batch-hard row, are left out); Table 4.4 has a
        line "+ re-ranking" for each row whose re-ranked metrics are stored (`re_ranked`)."""
        from tripletlib import tables
        from tripletlib.runs import re_ranked_by_row

        runs = tables.table_runs(self.trained_runs())
        re_ranked = re_ranked_by_row(runs, self.ensure_dataset())  # where `re_ranked` stores them
        return tables.build_thesis_tables(
            runs, baseline=self.baseline_metrics(), re_ranked=re_ranked
        )

    def re_ranked(self, row: str) -> dict[str, Any]:
        """Rank-1 / Rank-5 / mAP of a trained row under k-reciprocal re-ranking (Zhong et al.
        2017, `tripletlib.reranking`), as `tripletlib evaluate --re-rank` computes and stores
        them in the row's folder: computed once, then read back (and shown in Table 4.4)."""
        from tripletlib.runs import evaluate_saved_model, stored_re_ranked

        data_root = self.ensure_dataset()
        stored = stored_re_ranked(self.run_dir(row), data_root)
        if stored is None:
            evaluate_saved_model(self.run_dir(row), data_root, re_rank=True, progress=False,
                                 cache_dir=self.cache_dir)  # fmt: skip
            stored = stored_re_ranked(self.run_dir(row), data_root)
        return stored

    def occlusion_figure(self, row: str, queries: list[int] | np.ndarray):
        """What the untrained and the trained network of `row` look at in a few queries
        (occlusion sensitivity, `tripletlib.occlusion`): the change of each query's embedding when
        a patch is greyed out, forward passes only."""
        import keras

        from tripletlib import models, occlusion, pretraining

        images = self.split("query").images[np.asarray(queries)]
        backbone = config.parse_row(row)[0]
        options = self.profile.embedder_options(weights=None)
        keras.utils.set_random_seed(self.seed)
        embedders = {"untrained": models.build_embedder(backbone, **options)}
        if self.profile.warm_start is not None:
            embedders["start"] = pretraining.load_start(
                models.build_embedder(backbone, **options), backbone,
                pretraining.profile_start_path(self.profile, backbone),
            )
        embedders["trained"] = self.load_embedder(row)
        maps = {
            name: occlusion.occlusion_sensitivity(embedder, images).maps
            for name, embedder in embedders.items()
        }
        return viz.occlusion_figure(images, maps, dataset=self.dataset_kind)

    def history(self, row: str) -> pd.DataFrame:
        return pd.read_csv(self.run_dir(row) / "history.csv")

    def load_embedder(self, row: str):
        """The trained embedding network of a row (weights from its run folder)."""
        from tripletlib.runs import load_embedder

        return load_embedder(self.run_dir(row))

    def test_embeddings(self, row: str) -> tuple[np.ndarray, np.ndarray]:
        """Query and gallery embeddings of a trained row: computed once, then found again by the
        next notebook in the row's run folder (`runs.cached_embeddings`)."""
        key = f"embeddings:{row}"
        if key not in self._cache:
            from tripletlib.runs import cached_embeddings

            splits = {name: self.split(name).images for name in ("query", "gallery")}
            embeddings = cached_embeddings(
                self.run_dir(row), splits, self.profile.embed_batch_size
            )
            self._cache[key] = (embeddings["query"], embeddings["gallery"])
        return self._cache[key]

    def distances(self, row: str) -> np.ndarray:
        """Squared Euclidean query x gallery distances of a trained row (Section 3.3.2)."""
        from tripletlib.retrieval import squared_distances

        return squared_distances(*self.test_embeddings(row))

    def evaluate(
        self, row: str, protocol: str = "market", ap: str = "noninterpolated", re_rank: bool = False
    ):
        """Rank-k / CMC / mAP of a trained row on the test split (Section 4.1), through the
        package's one evaluation path (`evaluation.evaluate_embeddings`); `re_rank`: ranked by
        k-reciprocal re-ranked distances."""
        from tripletlib.evaluation import evaluate_embeddings

        return evaluate_embeddings(
            *self.test_embeddings(row), self.split("query"), self.split("gallery"),
            protocol=protocol, ap=ap, re_rank=re_rank,
        )  # fmt: skip

    def ranked_list_figure(self, row: str, queries: list[int] | np.ndarray, k: int = 8):
        """Figs 4.4/4.6/4.9: queries (black), correct (green) and wrong (red) top-k matches."""
        from tripletlib.evaluation import ranked_matches

        query, gallery = self.split("query"), self.split("gallery")
        queries = np.asarray(queries)
        indices, matches = ranked_matches(
            self.distances(row)[queries], query.person_ids[queries], gallery.person_ids,
            query.camera_ids[queries], gallery.camera_ids, k=k,
        )
        titles = [f"query id {query.person_ids[q]} (cam {query.camera_ids[q]})" for q in queries]
        return viz.plot_ranked_lists(
            query.images[queries], gallery.images, indices, matches, k=k, titles=titles,
            dataset=self.dataset_kind,
        )

    def query_figure(self, row: str, query_index: int, k: int = 10):
        """One query's top-k gallery images under `row`, with the query's number, person id and
        average precision written under them (notebook 07's explorer)."""
        query = self.split("query")
        average_precision = self.evaluate(row).per_query_ap[query_index]
        figure = self.ranked_list_figure(row, [query_index], k=k)
        figure.text(
            0.5, 0.0,
            f"{row}: the {k} nearest gallery images of query {query_index} of "
            f"{len(query.person_ids)} (person {query.person_ids[query_index]:04d}); AP of this "
            f"query {average_precision:.3f}", ha="center",
        )  # fmt: skip
        return figure

    def query_choices(self) -> list[tuple[str, int]]:
        """(label, query index) of every query, labelled by person id and camera, for a widget."""
        query = self.split("query")
        return [
            (f"person {pid:04d}, camera {cam} (query {index})", index)
            for index, (pid, cam) in enumerate(zip(query.person_ids, query.camera_ids, strict=True))
        ]

    def save_figure(self, figure, name: str) -> Path:
        """Save under OUTPUT_DIR/figures/<name>.png and return the path."""
        path = self.output_dir / "figures" / f"{name}.png"
        with files.atomic_path(path) as temporary:
            figure.savefig(temporary, dpi=110, bbox_inches="tight", format="png")
        return path

    def record(self, notebook: str, **values: Any) -> Path:
        """Merge values into OUTPUT_DIR/records/<notebook>.json, the metrics a notebook produced."""
        path = self.output_dir / "records" / f"{notebook}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        existing = files.read_json(path, f"delete {path} and run the notebook again",
                                   missing_ok=True) or {}  # fmt: skip
        existing.update(values)
        files.write_text_atomic(
            path, json.dumps(existing, indent=2, sort_keys=True, default=_to_json)
        )
        return path

    def trained_runs(self) -> list[dict[str, Any]]:
        from tripletlib.tables import load_run_metrics

        return load_run_metrics(sorted((self.output_dir / "runs").glob("*/metrics.json")))

    def trained_rows(self, first: str = "resnet50-lossless-offline") -> list[str]:
        """The rows trained in OUTPUT_DIR; where none is yet (a notebook opened before 03-05),
        `first` (the thesis' final model, Section 4.2.3) is trained now, with one line saying so."""
        rows = [run["row"] for run in self.trained_runs()]
        if not rows:
            print(f"no trained row in {self.output_dir / 'runs'} yet: training {first} on the "
                  f"{self.profile.name} profile first (notebooks 03-05 train the others)")  # fmt: skip
            self.train_row(first)
            rows = [first]
        return rows


def _to_json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot record {type(value).__name__} as JSON")
