"""benchmarks/train_throughput.py: a tiny run's report, the projection, the out-of-memory rule.

The script is imported from its file (it is a script, not part of the library); what it measures
is the library's, tested with it: `augment.FusedAugmentation` in test_augment.py,
`sampling.DeviceTripletDataset` in test_sampling.py, `devices.precision` in test_devices.py. One
end-to-end run (small synthetic preset, 64x32 images, ResNet-50, with and without augmentation,
1 warm-up + 2 timed steps each) is shared by the report tests: most of it compiles the steps.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from tripletlib import config, models

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_throughput.py"
TINY_RUN = ["--preset", "small", "--image-size", "64x32", "--steps", "2", "--warmup-steps", "1"]
TINY_RUN += ["--backbones", "resnet50", "--no-progress"]


def load_script():
    spec = importlib.util.spec_from_file_location("train_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through it
    spec.loader.exec_module(module)
    return module


throughput = load_script()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("throughput")
    json_path = folder / "report.json"
    arguments = [*TINY_RUN, "--data", str(folder / "data"), "--json", str(json_path)]
    returned = throughput.main(arguments)
    return returned, json.loads(json_path.read_text()), folder


def test_report_has_positive_speed_and_a_projection_consistent_with_its_numbers(tiny_run):
    _, report, _ = tiny_run
    augmented, plain = report["training"]
    assert (augmented["augmentation"], plain["augmentation"]) == ("library", "none")
    for row in (augmented, plain):
        check_row(row)
        if keras.backend.backend() == "jax":
            assert row["jit_compile"]  # the whole step under jax.jit, augmentation included
    (cost,) = report["augmentation_cost"]
    assert (cost["backbone"], cost["batch_size"], cost["input_path"]) == (
        "resnet50",
        32,
        "pydataset",
    )
    ratio = augmented["seconds_per_step"] / plain["seconds_per_step"]
    assert cost["ratio"] == pytest.approx(ratio, rel=1e-9)


def check_row(row):
    assert (row["backbone"], row["input_path"], row["batch_size"]) == ("resnet50", "pydataset", 32)
    assert row["images_per_step"] == 96  # 32 triplets x 3 images
    assert row["steps"] == 2 and row["warmup_steps"] == 1
    assert row["seconds_per_step"] > 0 and row["images_per_second"] > 0
    assert row["images_per_second"] == pytest.approx(96 / row["seconds_per_step"], rel=1e-9)
    assert row["steps_per_epoch"] == 405  # ceil(12936 / 32): one triplet per Market image
    assert row["seconds_per_epoch"] == pytest.approx(405 * row["seconds_per_step"], rel=1e-9)
    assert row["projected_iteration_seconds"] == pytest.approx(
        100 * 405 * row["seconds_per_step"], rel=1e-9
    )
    assert row["projected_row_seconds"] == pytest.approx(
        100 * 2 * row["steps_per_epoch"] * row["seconds_per_step"], rel=1e-9
    )
    assert row["compile_seconds"] >= 0 and row["first_step_seconds"] > 0
    assert row["losses_finite"] and math.isfinite(row["last_loss"])


def test_report_describes_the_run_data_embedding_and_environment(tiny_run):
    returned, report, folder = tiny_run
    assert returned == report
    counts = report["dataset"]["counts"]
    for split, folder_name in (("train", "bounding_box_train"), ("query", "query")):
        assert counts[split] == len(list((folder / "data" / folder_name).glob("*.jpg")))
    assert report["dataset"]["kind"] == "synthetic" and report["dataset"]["generated"]
    assert report["dataset"]["preset"] == "small"
    (embedded,) = report["embedding"]
    assert embedded["embedder_output_dtype"] == "float32"
    assert embedded["triplet_output_dtype"] == "float32"
    assert embedded["embedding_dim"] == 128
    assert embedded["gallery_images"] == counts["gallery"]
    assert embedded["query_images"] == counts["query"]
    assert embedded["embed_images_per_second"] > 0 and embedded["evaluation_seconds"] >= 0
    assert 0 < embedded["num_valid_queries"] <= counts["query"]
    environment = report["environment"]
    assert environment["backend"] == keras.backend.backend()
    assert environment["devices"] and "keras" in environment["versions"]
    assert "--image-size 64x32" in report["command"]
    assert report["command"].startswith(f"KERAS_BACKEND={keras.backend.backend()} ")
    assert report["projection"]["epochs"] == 100
    assert report["projection"]["offline_iterations"] == 2
    assert report["projection"]["train_images"] == 12936
    timing = report["augmentation_timing"]
    assert timing["images"] == 96
    assert all(timing[kind]["seconds"] > 0 for kind in ("library", "keras-layers"))


def test_the_printed_report_has_two_markdown_tables(tiny_run):
    _, report, _ = tiny_run
    text = throughput.format_report(report)
    assert "| resnet50 | pydataset | 32 |" in text
    assert "resnet50 batch 32 pydataset: a step with the library augmentation takes" in text
    separators = [line for line in text.splitlines() if line.startswith("|---|")]
    assert len(separators) == 2  # the training table and the embedding table


def test_projection_is_hand_derived():
    profile = throughput.thesis_profile((256, 128))
    assert throughput.project(0.5, 32, profile) == {
        "steps_per_epoch": 405,
        "seconds_per_epoch": 202.5,
        "projected_iteration_seconds": 20250.0,
        "projected_row_seconds": 40500.0,
    }
    assert throughput.project(1.0, 128, profile)["steps_per_epoch"] == 102  # 12936 / 128 = 101.06
    assert profile.weights is None and profile.triplet_batch_size == 32
    assert profile.input_shape == config.resolve_profile("thesis").input_shape


def test_mixed_precision_keeps_unit_float32_embeddings_and_restores_the_policy():
    profile = throughput.thesis_profile((32, 32))
    embedder, library_dtype = throughput.build_benchmark_embedder("resnet50", profile, True)
    assert keras.mixed_precision.global_policy().name == "float32"
    assert library_dtype in ("bfloat16", "float32")  # float32 once the library pins its L2 norm
    assert embedder.get_layer("embedding").compute_dtype == "bfloat16"
    assert str(embedder.outputs[0].dtype) == "float32"
    images = np.random.default_rng(0).uniform(0, 255, size=(2, 32, 32, 3)).astype(np.float32)
    embeddings = models.embed_images(embedder, images)
    assert embeddings.dtype == np.float32
    # bfloat16 normalisation would leave errors near 4e-3; float32 leaves about 1e-7
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--image-size", "256by128"], "256by128"),
        (["--image-size", "16x16"], "at least 32"),
        (["--steps", "0"], "--steps 0"),
        (["--warmup-steps", "0"], "--warmup-steps 0"),
        (["--batch-size", "0"], "batch size 0"),
        (["--backbones", "vgg"], "vgg"),
        (["--preset", "huge"], "huge"),
        (["--augmentations", "fused"], "fused"),
    ],
)
def test_bad_options_raise_a_clear_value_error_before_any_work(arguments, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        throughput.main([*arguments, "--data", str(tmp_path / "data"), "--no-progress"])
    assert not (tmp_path / "data").exists()


def test_an_out_of_memory_batch_is_recorded_and_ends_that_backbones_rows(monkeypatch):
    rng = np.random.default_rng(0)

    def split(count: int, people: int):
        pixels = rng.integers(0, 256, size=(count, 64, 32, 3), dtype=np.uint8)
        return pixels, np.arange(count) % people + 1, np.arange(count) % 2 + 1

    benchmark_data = throughput.BenchmarkData(
        "memory", "synthetic", False, 0.0, 0.0, {name: split(8, 4) for name in throughput.SPLITS}
    )
    options = throughput.BenchmarkOptions(
        image_size=(64, 32), batch_sizes=(128, 32, 64), steps=1, warmup_steps=1, progress=False
    )
    attempts, embedded_with = [], []

    def measure_training(model, dataset, backbone, input_path, batch_size, *rest):
        attempts.append((batch_size, input_path, model.get_layer("resnet50_embedder")))
        if batch_size == 64:
            raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 9GiB")
        return f"row {batch_size}"

    monkeypatch.setattr(throughput, "measure_training", measure_training)
    monkeypatch.setattr(
        throughput,
        "measure_embedding_and_evaluation",
        lambda backbone, embedder, *rest: embedded_with.append(embedder) or "embedded",
    )
    profile = throughput.thesis_profile((64, 32))
    rows, failures, embedding = throughput.benchmark_backbone(
        "resnet50", benchmark_data, options, profile
    )
    assert [(size, path) for size, path, _ in attempts] == [(32, "pydataset"), (64, "pydataset")]
    assert rows == ["row 32"] and embedding == "embedded"
    assert failures == [
        {
            "backbone": "resnet50",
            "batch_size": 64,
            "input_path": "pydataset",
            "augmentation": "library",
            "error": "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 9GiB",
        }
    ]
    assert embedded_with[0] is not attempts[0][2]  # a fresh embedder, not the broken model's

    def fails_otherwise(*arguments):
        raise ValueError("a real bug")

    monkeypatch.setattr(throughput, "measure_training", fails_otherwise)
    with pytest.raises(ValueError, match="a real bug"):
        throughput.benchmark_backbone("resnet50", benchmark_data, options, profile)
