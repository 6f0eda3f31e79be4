"""Two training steps of the triplet ResNet-50 on the active Keras backend (CI runs TF and JAX)."""

from __future__ import annotations

import keras
import numpy as np

from tripletlib.losses import TripletLoss
from tripletlib.models import build_resnet50_embedder, build_triplet_model, get_backbone


def test_two_triplet_training_steps_change_the_weights():
    keras.utils.set_random_seed(0)
    embedder = build_resnet50_embedder(
        input_shape=(64, 32, 3), embedding_dim=8, batchnorm_momentum=0.9
    )
    model = build_triplet_model(embedder)
    # margin 1.0: random unit vectors are nearly equidistant, so every triplet has a loss > 0
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=TripletLoss(margin=1.0))

    backbone = get_backbone(embedder)
    watched = {
        "frozen": backbone.get_layer("conv1_conv").kernel,
        "backbone": backbone.get_layer("conv5_block3_3_conv").kernel,
        "head": embedder.get_layer("embedding").kernel,
    }
    before = {name: keras.ops.convert_to_numpy(weight).copy() for name, weight in watched.items()}

    rng = np.random.default_rng(0)
    batch = [rng.uniform(0, 255, size=(2, 64, 32, 3)).astype(np.float32) for _ in range(3)]
    dummy_targets = np.zeros((2,), dtype=np.float32)
    step_losses = [float(model.train_on_batch(batch, dummy_targets)) for _ in range(2)]

    assert all(np.isfinite(step_losses)), step_losses
    assert all(value > 0 for value in step_losses), step_losses
    after = {name: keras.ops.convert_to_numpy(weight) for name, weight in watched.items()}
    np.testing.assert_array_equal(after["frozen"], before["frozen"])
    assert not np.array_equal(after["backbone"], before["backbone"])
    assert not np.array_equal(after["head"], before["head"])
