"""What a tool prints besides its own output (issue 20 "Noise"): TensorFlow's start-up notices and cuInit error on
a machine without a GPU, Keras's legacy-HDF5 warning on a save the user asked for as .h5."""

import logging
import os
import subprocess
import sys

import keras

from hrs_tf import models, quiet
from hrs_tf.models import serialization

START = "import hrs_tf, tensorflow as tf; tf.constant(1.0) + 1; print('ok')"


def test_the_log_level_hides_cuinit_only_without_a_gpu_and_keeps_the_users(monkeypatch):
    monkeypatch.setattr(quiet, "has_nvidia_device", lambda: False)
    assert quiet.tensorflow_log_level({}) == "3"
    monkeypatch.setattr(quiet, "has_nvidia_device", lambda: True)
    assert quiet.tensorflow_log_level({}) == "2"  # errors of a real GPU set-up stay visible
    assert quiet.tensorflow_log_level({"TF_CPP_MIN_LOG_LEVEL": "0"}) == "0"


def test_start_up_notices_are_dropped_and_nothing_else():
    assert quiet.is_start_up_notice("I0000 00:00:1 7 port.cc:153] oneDNN custom operations are on. You may see ...")
    assert quiet.is_start_up_notice("WARNING: All log messages before absl::InitializeLog() is called are written ...")
    assert not quiet.is_start_up_notice("E0000 00:00:1 7 bfc_allocator.cc:1] Allocator ran out of memory")
    assert not quiet.is_start_up_notice("Traceback (most recent call last):")


def test_importing_the_project_prints_nothing_unless_asked():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    quiet_run = subprocess.run([sys.executable, "-c", START], capture_output=True, text=True, env=env, timeout=120)
    assert quiet_run.returncode == 0 and quiet_run.stdout == "ok\n"
    if not quiet.has_nvidia_device():
        assert quiet_run.stderr == ""
    loud = subprocess.run([sys.executable, "-c", START], capture_output=True, text=True, timeout=120,
                          env=dict(env, TF_CPP_MIN_LOG_LEVEL="0"))
    # the filter is what hid it: TensorFlow's own start-up lines (which ones depends on the CPU: an AVX2 machine
    # prints no oneDNN notice) come back when the user asks for them
    assert any(quiet.is_start_up_notice(line) for line in loud.stderr.splitlines())


def test_an_h5_save_has_no_legacy_warning(tmp_path, caplog):
    model = models.build_base_model("mnist")
    with caplog.at_level(logging.WARNING):
        model.save(tmp_path / "raw.h5")
    assert "considered legacy" in caplog.text  # what Keras says on its own
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        serialization.save_model(model, tmp_path / "ours.h5")
        logging.getLogger("absl").warning("another warning")
    assert "considered legacy" not in caplog.text and "another warning" in caplog.text
    assert keras.models.load_model(tmp_path / "ours.h5", compile=False).count_params() == model.count_params()


def test_tools_drop_tensorflows_retracing_warning_and_nothing_else(caplog):
    import tensorflow as tf

    def retrace():
        for size in range(1, 8):  # a new tf.function traced on every call: TensorFlow warns after the fifth
            tf.function(lambda x: x + 1)(tf.zeros([size]))

    with caplog.at_level(logging.WARNING):
        retrace()
    assert "triggered tf.function retracing" in caplog.text  # what TensorFlow says on its own
    caplog.clear()
    quiet.quiet_tool_logs()
    quiet.quiet_tool_logs()  # installed once however often it is called
    assert sum(isinstance(f, quiet.RetracingNotice) for f in logging.getLogger("tensorflow").filters) == 1
    with caplog.at_level(logging.WARNING):
        retrace()
        logging.getLogger("tensorflow").warning("a real warning")
    assert "retracing" not in caplog.text and "a real warning" in caplog.text
    for name in ("tensorflow", "absl"):  # leave the loggers as other tests expect them
        logger = logging.getLogger(name)
        for f in [f for f in logger.filters if isinstance(f, quiet.RetracingNotice)]:
            logger.removeFilter(f)
