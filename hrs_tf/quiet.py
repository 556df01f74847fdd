"""What the tools print besides their own output: TensorFlow's and Keras's start-up and save notices, made quiet
where they say nothing to the user (issue 20 "Noise").

- :func:`tensorflow_log_level`: the level of TensorFlow's C++ log (``TF_CPP_MIN_LOG_LEVEL``) set before TensorFlow
  is imported: 2 (errors only) where a GPU driver is present; 3 on a machine with no NVIDIA device, where the only
  C++ "error" TensorFlow's CUDA build prints is ``failed call to cuInit ... (303)`` (there is no GPU to find).
  A value the user set is kept (``TF_CPP_MIN_LOG_LEVEL=0`` shows everything); errors that matter still reach the
  user as Python exceptions.
- :func:`import_tensorflow`: imports TensorFlow with its start-up lines that are not errors filtered out (oneDNN's
  "custom operations are on", "Could not find cuda drivers", absl's "log messages before absl::InitializeLog()"):
  they are written by its shared libraries before any log level applies, so they are caught at the file descriptor
  and every other line is passed on unchanged.
- :class:`LegacyH5Notice`: drops Keras's "This file format is considered legacy" warning, which Keras logs on every
  ``.h5`` save although the user asked for ``.h5`` (the papers' repos publish that format).
- :class:`RetracingNotice`: drops TensorFlow's "triggered tf.function retracing" warning in the tools: an evaluation
  compiles one attack function per model and setting and calls it on batches of changing size (restarts on the
  images not yet broken) by design (:func:`hrs_tf.attacks.gradients.compiled`), so the advice to define the
  function outside a loop does not apply. :func:`quiet_tool_logs` installs both filters.
"""

import glob
import logging
import os
import sys
import tempfile

NVIDIA_DEVICES = ("/dev/nvidia*", "/proc/driver/nvidia")
START_UP_NOTICES = ("All log messages before absl::InitializeLog()", "oneDNN custom operations are on",
                    "Could not find cuda drivers on your machine")


def has_nvidia_device():
    """Whether this machine shows an NVIDIA driver (device nodes or the driver's /proc folder)."""
    return any(glob.glob(pattern) for pattern in NVIDIA_DEVICES)


def tensorflow_log_level(environ=None):
    """Sets ``TF_CPP_MIN_LOG_LEVEL`` in ``environ`` (default ``os.environ``) unless it is set; returns its value."""
    environ = os.environ if environ is None else environ
    return environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2" if has_nvidia_device() else "3")


def is_start_up_notice(line):
    return any(notice in line for notice in START_UP_NOTICES)


def import_tensorflow():
    """``import tensorflow`` with its start-up notices (:data:`START_UP_NOTICES`) dropped from standard error; with
    ``TF_CPP_MIN_LOG_LEVEL=0`` (the user wants everything) nothing is filtered."""
    if "tensorflow" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        import tensorflow

        return tensorflow
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as caught:
        os.dup2(caught.fileno(), 2)
        try:
            import tensorflow
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            for line in caught.read().decode(errors="replace").splitlines(keepends=True):
                if not is_start_up_notice(line):
                    sys.stderr.write(line)
            sys.stderr.flush()
    return tensorflow


class LegacyH5Notice(logging.Filter):
    """A filter for the ``absl`` logger that drops Keras's legacy-HDF5 notice and lets every other record through."""

    def filter(self, record):
        return "considered legacy" not in record.getMessage()


class RetracingNotice(logging.Filter):
    """A filter that drops TensorFlow's "triggered tf.function retracing" warning and lets every other record through."""

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


def quiet_tool_logs():
    """Installs :class:`RetracingNotice` on the loggers TensorFlow's warning reaches (``tensorflow`` and ``absl``)."""
    for name in ("tensorflow", "absl"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RetracingNotice) for f in logger.filters):
            logger.addFilter(RetracingNotice())
