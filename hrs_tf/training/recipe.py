"""Training with the reference recipe of the HRS / defensive-dropout repos (REFERENCE section 1).

SGD, learning rate 0.01, momentum 0.9, Nesterov, Keras-2 ``decay=1e-6`` per iteration (an inverse-time
schedule, practically constant), batch 128, softmax cross-entropy on logits, no augmentation, the last
epoch kept (the test set only monitors).
"""

import platform
import sys
import time

import keras
import numpy as np

from hrs_tf import checks

REFERENCE_LEARNING_RATE = 0.01
REFERENCE_MOMENTUM = 0.9
REFERENCE_DECAY = 1e-6
REFERENCE_BATCH_SIZE = 128


def reference_optimizer(learning_rate=REFERENCE_LEARNING_RATE):
    """SGD(lr, momentum 0.9, Nesterov) with Keras-2 style ``lr / (1 + 1e-6 * iteration)`` decay."""
    schedule = keras.optimizers.schedules.InverseTimeDecay(learning_rate, decay_steps=1, decay_rate=REFERENCE_DECAY)
    return keras.optimizers.SGD(learning_rate=schedule, momentum=REFERENCE_MOMENTUM, nesterov=True)


def compile_reference(model, learning_rate=REFERENCE_LEARNING_RATE):
    """Compiles ``model`` (logits output, integer labels) with the reference optimiser and loss."""
    model.compile(
        optimizer=reference_optimizer(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    return model


def check_training_settings(epochs, batch_size, learning_rate):
    checks.count(epochs, "epochs", minimum=1)
    checks.count(batch_size, "batch_size", minimum=1)
    checks.positive(learning_rate, "learning_rate")


class EpochLog(keras.callbacks.Callback):
    """Records per-epoch metrics and wall time as plain floats (for the JSON sidecars)."""

    def __init__(self):
        super().__init__()
        self.epochs = []
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        record = {"epoch": epoch + 1, "seconds": round(time.time() - self._start, 3)}
        record.update({k: float(v) for k, v in (logs or {}).items()})
        self.epochs.append(record)


class StepProgress(keras.callbacks.Callback):
    """One plain line every ``every_seconds`` inside an epoch: steps done, rate and the time left in the epoch
    (readable in a log file, unlike a progress bar); with ``epoch_lines`` also one line at the end of each epoch
    with its metrics and time. The rate is timed from the end of the epoch's first step, so the epoch's set-up and
    the first step's tracing do not make the first estimate absurd; lines start at the second step.

    Training one ``fit`` call per epoch, Keras's own ``verbose=2`` lines would read "Epoch 4/4" in epoch 4 of 40:
    the trainers run ``fit`` quietly and print these lines instead."""

    def __init__(self, every_seconds=15.0, out=None, total_epochs=None, epoch_lines=False):
        super().__init__()
        self.every_seconds = float(every_seconds)
        self.total_epochs = total_epochs  # shown as the epoch count (default: the fit call's)
        self.out = out or (lambda line: print(line, flush=True))
        self.epoch_lines = bool(epoch_lines)
        self._epoch = 0

    def _of_total(self):
        return f"{self._epoch}/{self.total_epochs or self.params.get('epochs')}"

    def on_epoch_end(self, epoch, logs=None):
        if self.epoch_lines:
            metrics = ", ".join(f"{key} {float(value):.4f}" for key, value in (logs or {}).items())
            self.out(f"epoch {self._of_total()}: {metrics}, {time.time() - self._epoch_start:.0f} s")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch + 1
        self._epoch_start = self._start = self._last = time.time()

    def on_train_batch_end(self, batch, logs=None):
        now = time.time()
        if batch == 0:
            self._start = now  # the first step's end: the rate counts the steps after it
            return
        if now - self._last < self.every_seconds:
            return
        self._last = now
        done, total = batch + 1, self.params.get("steps")
        rate = batch / max(now - self._start, 1e-9)
        left = f", about {(total - done) / rate:.0f} s left in the epoch" if total else ""
        of = f"/{total}" if total else ""
        self.out(f"  epoch {self._of_total()}: {done}{of} steps, {rate:.1f} steps/s{left}")


def epoch_seed(seed, epoch):
    """The seed of one epoch of a run seeded ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0] % (2**31 - 1))


def start_epoch(model, seed, epoch):
    """Seeds epoch ``epoch`` of ``model``'s training: Keras's shuffling (a ``fit`` call made after this) and every
    seed generator in the model (dropout, stochastic layers) from (seed, epoch) only, so that each epoch sees its own
    order and draws and a run resumed at any epoch continues as an uninterrupted one.

    One ``fit`` call over all epochs would not do: with a global seed set, TensorFlow's shuffle inside Keras's input
    pipeline restarts its sequence on every epoch's new iterator, so every epoch would see the batches in the same
    order (Keras 2 and the reference code reshuffle each epoch)."""
    from hrs_tf.layers import stochastic

    keras.utils.set_random_seed(epoch_seed(seed, epoch))
    stochastic.reseed(model, epoch_seed(seed, epoch))


def fit(model, x, y, epochs, batch_size=REFERENCE_BATCH_SIZE, learning_rate=REFERENCE_LEARNING_RATE,
        seed=0, monitor=None, verbose=2, callbacks=(), progress_seconds=15.0):
    """Trains ``model`` with the reference recipe, one ``fit`` call per epoch seeded by :func:`start_epoch`; returns
    the per-epoch log (list of dicts).

    ``seed`` fixes weight initialisation only if the model is built after :func:`keras.utils.set_random_seed`; it
    always fixes each epoch's shuffling and dropout masks here.
    ``monitor`` = (x_test, y_test) adds ``val_loss`` / ``val_accuracy`` to each epoch's record.
    With ``verbose=2`` (the tools' setting) :class:`StepProgress` prints a line every ``progress_seconds`` inside an
    epoch and one with the metrics at its end.
    """
    check_training_settings(epochs, batch_size, learning_rate)
    compile_reference(model, learning_rate)
    log = EpochLog()
    progress = [StepProgress(progress_seconds, total_epochs=int(epochs), epoch_lines=True)] if verbose == 2 else []
    for epoch in range(int(epochs)):
        start_epoch(model, seed, epoch)
        model.fit(x, y, batch_size=int(batch_size), initial_epoch=epoch, epochs=epoch + 1, shuffle=True,
                  validation_data=monitor, verbose=keras_verbosity(verbose), callbacks=[log, *progress, *callbacks])
    return log.epochs


def keras_verbosity(verbose):
    """``fit``'s own verbosity under ours: 2 (plain lines) is printed by :class:`StepProgress`, 1 is a progress bar."""
    return 1 if verbose == 1 else 0


def versions():
    """Versions of the software stack, recorded in every result file."""
    import h5py
    import tensorflow as tf

    import hrs_tf

    return {
        "hrs_tf": hrs_tf.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "h5py": h5py.__version__,
    }


def train_base_model(dataset, arch=None, epochs=40, batch_size=REFERENCE_BATCH_SIZE,
                     learning_rate=REFERENCE_LEARNING_RATE, seed=0, dropout_rate=None, verbose=2, build_model=None,
                     checkpoint=None, log=print, identity=None):
    """Builds and trains the base model of ``dataset`` (an :class:`hrs_tf.data.Dataset`).

    ``build_model(architecture, dropout_rate=...)`` replaces :func:`hrs_tf.models.build_base_model` (e.g. the
    Gaussian-noise model of :mod:`hrs_tf.defenses.gaussian`); it is called right after seeding.

    Trained one epoch at a time (:func:`hrs_tf.training.fine_tuning.fine_tune`: each epoch's shuffling and random
    draws depend only on (seed, epoch)); ``checkpoint``: a file written after every epoch, from which a killed run
    restarted with the same settings continues at its next epoch, to the same weights as an uninterrupted run;
    ``identity``: more settings the checkpoint must match (e.g. a noise model's deviations).

    Returns ``(model, record)``; ``record`` is the JSON-ready description of the run: settings, seed,
    per-epoch loss / accuracy and test accuracy, final test accuracy, timings and versions.
    """
    from hrs_tf import models
    from hrs_tf.evaluation import metrics
    from hrs_tf.training import fine_tuning

    check_training_settings(epochs, batch_size, learning_rate)
    architecture = models.architecture_for(dataset, arch)
    rate = architecture.dropout_rate if dropout_rate is None else float(dropout_rate)
    keras.utils.set_random_seed(seed)
    model = (build_model or models.build_base_model)(architecture, dropout_rate=dropout_rate)
    history = fine_tuning.fine_tune(
        model, dataset, epochs, checkpoint, batch_size=batch_size, learning_rate=learning_rate, seed=seed,
        verbose=verbose, log=log, what="a base-model run",
        identity={"dataset": dataset.name, "architecture": architecture.name, "dropout_rate": rate, **(identity or {})})
    record = {
        "kind": "base_model",
        "dataset": dataset.name,
        "data_source": dataset.source,
        "architecture": architecture.name,
        "dropout_rate": rate,
        "epochs": int(epochs),
        "batch_size": int(batch_size),
        "learning_rate": float(learning_rate),
        "optimizer": f"SGD(momentum={REFERENCE_MOMENTUM}, nesterov=True, inverse-time decay {REFERENCE_DECAY}/iteration)",
        "seed": int(seed),
        "num_params": models.count_params(model),
        "history": history,
        "test_accuracy": metrics.accuracy(model, dataset.x_test, dataset.y_test),
        "train_seconds": round(sum(h["seconds"] for h in history), 1),  # every epoch's, across resumptions
        "versions": versions(),
    }
    return model, record
