"""What the benchmarks share: timing (interleaved long-minus-short per-step estimates) and the MNIST model and
images they time on (``runs/base_mnist.h5`` if present, else an untrained base model; test images, or random
ones when the data set is missing)."""

import os
import time

import numpy as np
from absl import flags


def define_mnist_flags(model=True):
    """``--model`` (when ``model``) and ``--data_dir``: what :func:`mnist_model` and :func:`mnist_images` read."""
    if model:
        flags.DEFINE_string("model", "runs/base_mnist.h5", "Model to attack (an untrained MNIST base model if missing).")
    flags.DEFINE_string("data_dir", "../shared/data", "MNIST location (random images if missing).")


def define_timing_flags(batch_size, repeats, short=None, long=None, unit="Steps", batch_help="Images per batch."):
    """``--batch_size``, ``--repeats`` and, when ``short`` / ``long`` are given, the two run lengths of
    :func:`interleaved_per_step`."""
    flags.DEFINE_integer("batch_size", batch_size, batch_help)
    flags.DEFINE_integer("repeats", repeats, "Interleaved timing repeats (the median is kept).")
    if short is not None:
        flags.DEFINE_integer("short", short, f"{unit} of the short run.")
        flags.DEFINE_integer("long", long, f"{unit} of the long run.")


def timed(fn):
    """``(seconds, result)`` of ``fn()``."""
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def interleaved_per_step(runs, short, long, repeats):
    """Per-step seconds of each ``run(steps)`` in ``runs``: (t[long] - t[short]) / (long - short).

    The runs are timed in turn within each repeat (the machine is shared; interleaving exposes them to the
    same load), after one warm-up (trace) of each; returns the median over repeats of each run's estimate and
    all the estimates.
    """
    for run in runs:
        run(short)
        run(long)
    estimates = [[] for _ in runs]
    for _ in range(repeats):
        for k, run in enumerate(runs):
            estimates[k].append((timed(lambda: run(long))[0] - timed(lambda: run(short))[0]) / (long - short))
    return [float(np.median(e)) for e in estimates], estimates


def mnist_model(path):
    """``(model, description)``: the model file ``path``, or an untrained MNIST base model when it is missing."""
    from hrs_tf import models
    from hrs_tf.models import serialization

    if os.path.isfile(path):
        return serialization.load_model(path), path
    return models.build_base_model("mnist"), "untrained MNIST base model"


def mnist_images(data_dir, count):
    """``(x, y)``: the first ``count`` MNIST test images and labels, or random images and ``y=None``."""
    from hrs_tf import data

    try:
        test = data.load_dataset("mnist", data_dir)
        return test.x_test[:count], test.y_test[:count].astype(np.int64)
    except Exception:  # noqa: BLE001 -- timing only needs images of the right shape
        return np.random.default_rng(0).random((count, 28, 28, 1), dtype=np.float32), None


def attack_batch(values):
    """``(model, description, x, y)`` of an attack benchmark after seeding Keras with 0: the ``--model`` (see
    :func:`mnist_model`), the first ``--batch_size`` images (:func:`mnist_images`) and the model's own labels for them."""
    import keras

    keras.utils.set_random_seed(0)
    model, source = mnist_model(values.model)
    x, _ = mnist_images(values.data_dir, values.batch_size)
    return model, source, x, np.argmax(model(x, training=False), axis=1)
