"""TensorFlow started without its C++ start-up chatter, for the commands that run it in their own process."""

from __future__ import annotations

import os
import sys
import tempfile

# TensorFlow's C++ log level: 3 keeps only fatal messages. On a machine without a GPU the levels below print
# "failed call to cuInit" (an ERROR) on every start, which is the normal case there, not a fault.
QUIET_TF_LOG_LEVEL = "3"


def quiet_tensorflow_start() -> None:
    """Start TensorFlow without its start-up chatter, unless the user chose a log level.

    The level is set before TensorFlow is imported (it reads the variable once) and is inherited by any Ray
    workers the process starts afterwards. Some messages (oneDNN's notice, "Could not find cuda drivers")
    are written before TensorFlow's logging reads any setting, so the import itself runs with the process's
    stderr set aside; what it wrote is shown if the import fails. Nothing happens under another Keras
    backend, or when the user set TF_CPP_MIN_LOG_LEVEL: their setting and all its output stand.
    """
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = QUIET_TF_LOG_LEVEL
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow" or "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401 (imported for its side effects only, here where it is quiet)
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
