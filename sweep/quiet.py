"""Quiet TensorFlow's start-up in the CLIs: its lines say nothing about a trial.

On import TensorFlow and its CUDA stubs print, through absl before absl is initialised (so
TF_CPP_MIN_LOG_LEVEL does not reach them): 'All log messages before absl::InitializeLog()',
'Could not find cuda drivers', the CPU-feature notice and, at the first device probe on a
machine without a GPU, 'failed call to cuInit'. They are written to fd 2 directly, so the
import and the device probe run with fd 2 on /dev/null; Python's sys.stderr keeps the real
stream meanwhile, and fd 2 comes back afterwards, so Python errors and any later native error
(a converter crash) still show. Known Python-side chatter (absl's conversion deprecation notes,
deprecation warnings raised inside TF, Keras, tfmot, LiteRT) is filtered. FRILL_TF_VERBOSE=1 keeps it all.
"""
from __future__ import annotations

import os
import sys
import warnings

from results.files import native_stderr_to_devnull

# Set before any TF import (and inherited by Ray workers started from this process).
ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "TF_USE_LEGACY_KERAS": "1"}
# Messages (regex, from the start) of known, harmless Python-side warnings.
KNOWN_WARNINGS = (
    r"Please consider providing the trackable_obj argument",   # TFLite from_concrete_functions
    r".*`tf\.lite\.Interpreter` is deprecated",
)
# Deprecation warnings raised inside these libraries are theirs to fix, not the user's; a
# deprecation in our own code (or the user's) still shows.
NOISY_MODULES = r"(tensorflow|tf_keras|keras|tensorflow_model_optimization|tensorflow_hub|ai_edge_litert)(\.|$)"


def verbose() -> bool:
    return os.environ.get("FRILL_TF_VERBOSE", "") not in ("", "0")


def quiet_python_logs() -> None:
    """absl's Python logger to errors only, and the known warnings filtered (cheap, no TF import)."""
    import logging

    from absl import logging as absl_logging
    absl_logging.set_verbosity(absl_logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    for msg in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=msg)
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=NOISY_MODULES)


def start_tensorflow(threads: int | None = None) -> None:
    """Import TensorFlow and probe its devices with start-up lines silenced; quiet the Python-side
    loggers. threads: pin TF's pools first, as students.train.set_threads does; that is only
    possible before TF's context starts, which the warm-up below (and importing
    students.frontend) does. Idempotent."""
    for k, v in ENV.items():
        os.environ.setdefault(k, v)
    if verbose():
        _pin(threads)
        return
    quiet_python_logs()
    if "tensorflow" not in sys.modules:
        with native_stderr_to_devnull():
            import tensorflow as tf
            import tf_keras  # noqa: F401
            from ai_edge_litert.interpreter import Interpreter
            _pin(threads)
            tf.config.list_physical_devices()   # the CUDA probe (cuInit) happens here, once
            # LiteRT prints 'Created TensorFlow Lite XNNPACK delegate' once per process, whatever
            # the log level: spend it here on a one-op model (~0.3 s).
            fn = tf.function(lambda x: x + 1.0).get_concrete_function(tf.TensorSpec([1], tf.float32))
            Interpreter(model_content=tf.lite.TFLiteConverter.from_concrete_functions([fn]).convert()).allocate_tensors()


def _pin(threads: int | None) -> None:
    if threads:
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
