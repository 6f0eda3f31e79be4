"""Import Keras without TensorFlow's start-up log lines (they would land in notebook outputs).

TensorFlow prints its oneDNN notice from C++ before any Python logging setting applies, so
`TF_CPP_MIN_LOG_LEVEL` alone does not silence it; the file descriptor of standard error is pointed
at /dev/null for the duration of the import instead. Errors raised by the import still propagate.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def silenced_stderr_fd() -> Iterator[None]:
    """Send everything written to file descriptor 2 (C and Python) to /dev/null inside the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def import_keras_quietly():
    """Import and return `keras` with TensorFlow's start-up noise kept out of the output."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "keras" in sys.modules:
        return sys.modules["keras"]
    with silenced_stderr_fd():
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow  # (its lazily loaded parts print too)

            # Its Python logger's warnings too ("triggered tf.function retracing" when a model
            # embeds batches of several sizes, as the occlusion maps do); errors still show.
            tensorflow.get_logger().setLevel("ERROR")
    return keras
