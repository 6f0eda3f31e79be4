"""tripletlib.runs: run folders, metrics.json, mining files and the one evaluation of an embedder."""

from __future__ import annotations

import json
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from tripletlib import data, evaluation, models, runs


def metrics_values(**changes):
    values = {
        "row": "resnet50-triplet-offline", "backbone": "resnet50", "loss": "triplet",
        "mining": "offline", "profile": "ci", "dataset": "synthetic", "data_root": "/data",
        "protocol": "market", "seed": 0,
        "trained": {"rank1": 0.5, "rank5": 0.7, "mAP": 0.4, "cmc": [], "num_valid_queries": 3},
        "untrained": {"rank1": 0.1, "rank5": 0.2, "mAP": 0.05, "cmc": [], "num_valid_queries": 3},
        "train_seconds": 12.0, "images_per_second": 50.0,
    }  # fmt: skip
    return {**values, **changes}


def test_the_schema_is_run_metrics_fields_and_a_written_file_reads_back(tmp_path):
    assert set(runs.RunMetrics.required_fields()) == set(metrics_values())
    metrics = runs.RunMetrics.from_dict(metrics_values(pretrained={"rank1": 0.0, "mAP": 0.1}))
    metrics.write(tmp_path)
    assert runs.RunMetrics.read(tmp_path) == metrics
    assert json.loads((tmp_path / "metrics.json").read_text())["pretrained"]["mAP"] == 0.1
    assert runs.gain_over_start(metrics.to_dict()) == pytest.approx(0.3)  # over the start alone
    assert runs.gain_over_start(metrics_values()) == pytest.approx(0.35)  # over random weights


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([], "expected a JSON object, got list"),
        ({k: v for k, v in metrics_values().items() if k != "train_seconds"},
         r"missing key\(s\) \['train_seconds'\]"),
        (metrics_values(row=" "), "'row' must be a non-empty string"),
        (metrics_values(trained={"rank1": 0.5, "mAP": 0.4}), r"'trained' is missing key\(s\) \['rank5'\]"),
        (metrics_values(trained={"rank1": 50.0, "rank5": 0.7, "mAP": 0.4}),
         r"trained\['rank1'\] must be a fraction in \[0, 1\], got 50.0"),
    ],
)  # fmt: skip
def test_validate_names_the_file_and_what_is_wrong(values, message):
    with pytest.raises(ValueError, match=f"^m.json: {message}"):
        runs.RunMetrics.validate(values, "m.json")


def test_mining_files_keep_one_record_per_iteration(tmp_path):
    path = runs.hard_negatives_path(tmp_path, 2)
    assert path == tmp_path / "checkpoints" / "hard_negatives_iteration2.npz"
    mined = {0: np.array([3, 4]), 5: np.array([], dtype=np.int64), 7: np.array([1])}
    runs.save_hard_negatives(path, mined)
    loaded = runs.load_hard_negatives(path)
    assert sorted(loaded) == [0, 5, 7] and all(np.array_equal(loaded[a], mined[a]) for a in mined)
    runs.record_mining(tmp_path, 2, {"usable_anchors": 2})
    runs.record_mining(tmp_path, 2, {"usable_anchors": 3})  # a resumed run mines again
    runs.record_mining(tmp_path, 3, {"usable_anchors": 1})
    records = json.loads((tmp_path / runs.MINING_FILE).read_text())
    assert records == [{"iteration": 2, "usable_anchors": 3}, {"iteration": 3, "usable_anchors": 1}]


def test_embed_and_evaluate_is_evaluate_embeddings_on_the_embedders_output():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 8, 3))
    flat = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    embedder = keras.Model(inputs, models.L2Normalization()(keras.layers.Dense(4)(flat)))
    rng = np.random.default_rng(0)

    def split(count, camera):
        images = rng.integers(0, 256, (count, 16, 8, 3), dtype=np.uint8)
        return data.Split(images, np.arange(count) % 3 + 1, np.full(count, camera))

    query, gallery = split(6, 1), split(12, 2)
    evaluated = runs.embed_and_evaluate(embedder, query, gallery, batch_size=4)
    expected = evaluation.evaluate_embeddings(
        models.embed_images(embedder, query.images), models.embed_images(embedder, gallery.images),
        SimpleNamespace(person_ids=query.person_ids, camera_ids=query.camera_ids),
        SimpleNamespace(person_ids=gallery.person_ids, camera_ids=gallery.camera_ids),
    )  # fmt: skip
    assert evaluated.result.mAP == pytest.approx(expected.mAP, abs=1e-6)
    assert evaluated.embeddings["query"].shape == (6, 4) and evaluated.search_seconds >= 0
    record = runs.evaluate_embedder(embedder, query, gallery, batch_size=4)
    assert set(record) == set(runs.METRIC_KEYS) and record["mAP"] == evaluated.result.mAP
