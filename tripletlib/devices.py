"""How training uses the hardware: several devices (data parallel) and mixed precision.

Both go through Keras' own APIs, so the trainer, the models and the losses stay as they are:

- `data_parallel`: ``keras.distribution.DataParallel`` (JAX): every device holds a copy of the
  weights, each batch is split across the devices, and the gradients are averaged by the compiled
  step, so a step on several devices computes the loss of the whole batch, as on one.
- `jit_compile`: the `jit_compile` setting every training model of the library is compiled with.
- `precision`: the ``keras.mixed_precision`` policy layers are built under, e.g.
  ``"mixed_bfloat16"`` (bf16 compute, float32 weights). The embedders' L2 normalisation
  (Eq. 3.5) and the triplet model's stacking are pinned to float32 in `models`, so embeddings,
  distances and losses stay float32 and unit-norm; `check_float32_embeddings` checks it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import keras

from tripletlib.config import PRECISIONS


def data_parallel(
    devices: Sequence[str] | None = None, set_global: bool = True
) -> keras.distribution.DataParallel:
    """A ``keras.distribution.DataParallel`` over ``devices`` (default: all of Keras' devices).

    With ``set_global`` (the default) it becomes the distribution of everything built and trained
    afterwards (``keras.distribution.set_distribution``); otherwise use it as a context,
    ``with data_parallel(set_global=False).scope(): ...``. Build the model and call ``fit`` under
    it; the batch size must be a multiple of the number of devices. JAX only: Keras' distribution
    API is not implemented for the other backends (TensorFlow has ``tf.distribute``).
    """
    backend = keras.backend.backend()
    if backend != "jax":
        raise ValueError(
            f"data_parallel needs KERAS_BACKEND=jax (Keras' distribution API); the backend is "
            f"{backend!r}."
        )
    available = keras.distribution.list_devices()
    devices = list(available if devices is None else devices)
    if not devices:
        raise ValueError("devices is empty; give at least one device, or None for all of them.")
    unknown = [device for device in devices if device not in available]
    if unknown:
        raise ValueError(f"devices {unknown} are not among Keras' devices {available}.")
    distribution = keras.distribution.DataParallel(devices=devices)
    if set_global:
        keras.distribution.set_distribution(distribution)
    return distribution


def check_data_parallel_backend(enabled: bool) -> None:
    """A one-line ValueError when a profile asks for data parallelism outside JAX."""
    backend = keras.backend.backend()
    if enabled and backend != "jax":
        raise ValueError(
            f"data_parallel=True needs KERAS_BACKEND=jax (Keras' distribution API); the backend "
            f"is {backend!r}: set data_parallel=False or run under JAX."
        )


def training_distribution(enabled: bool) -> keras.distribution.DataParallel | None:
    """A profile's ``data_parallel`` setting as a distribution: `data_parallel` over all of
    Keras' devices when ``enabled`` and there are several, None otherwise (one device: nothing to
    split). Not set globally: use ``distribution.scope()`` around building and ``fit``.
    ``enabled`` under a backend other than JAX raises a one-line ValueError."""
    check_data_parallel_backend(enabled)
    if not enabled or len(keras.distribution.list_devices()) < 2:
        return None
    return data_parallel(set_global=False)


def describe(profile_precision: str, device_resident: bool, distribution) -> dict:
    """What a run records about how it used the hardware (`runs.RunMetrics.setup`)."""
    return {
        "backend": keras.backend.backend(),
        "devices": [str(device) for device in keras.distribution.list_devices()],
        "precision": profile_precision,
        "device_resident": bool(device_resident),
        "data_parallel_devices": (
            int(distribution.device_mesh.devices.size) if distribution is not None else 1
        ),
    }


def check_precision(policy: str) -> str:
    if policy not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {policy!r}.")
    return policy


@contextlib.contextmanager
def precision(policy: str = "mixed_bfloat16") -> Iterator[None]:
    """Build layers under the dtype ``policy`` (`PRECISIONS`); the previous policy comes back after.

    A model built inside keeps its layers' policies after the block: build the embedder and the
    training model inside, train and embed anywhere. ``"mixed_bfloat16"``: bf16 activations,
    float32 weights and optimizer; the embeddings stay float32 (see the module docstring).
    """
    check_precision(policy)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def check_float32_embeddings(embedder: keras.Model) -> None:
    """Raise ``ValueError`` unless ``embedder``'s output is float32 (whatever its policy)."""
    dtype = str(embedder.outputs[0].dtype)
    if dtype != "float32":
        raise ValueError(
            f"{embedder.name} returns {dtype} embeddings; its last layer (the L2 normalisation) "
            "must compute in float32 so that distances and the loss keep float32 precision."
        )


def jit_compile() -> bool | str:
    """`Model.compile`'s `jit_compile` for training here: False under TensorFlow, whose XLA path
    is slower than its own kernels on these CPUs (docs/benchmarks.md); "auto" elsewhere (JAX jits)."""
    return False if keras.backend.backend() == "tensorflow" else "auto"
