"""Resumable fine-tuning of a model that already has weights (an *installed* defense: a trained model with some
layers replaced, then retrained for a few epochs, e.g. the defensive hash classifier).

The reference recipe (:mod:`.recipe`: SGD 0.01, momentum 0.9, Nesterov, batch 128, cross-entropy on logits), one
epoch at a time; after every epoch a checkpoint (:mod:`.checkpoint`) holds the weights, the optimizer state and the
history, so a killed run restarted with the same settings continues at the next epoch, to the weights of an
uninterrupted run: each epoch's shuffling and random draws (dropout, stochastic layers, whose seed generators are
restarted) depend only on (seed, epoch).
"""

import os
import time

from hrs_tf import checks
from hrs_tf.evaluation import metrics
from hrs_tf.training import checkpoint as checkpoints
from hrs_tf.training.recipe import (REFERENCE_BATCH_SIZE, REFERENCE_LEARNING_RATE, StepProgress, check_training_settings,
                                    compile_reference, keras_verbosity, start_epoch)

IDENTITY_KEYS = ("train_fingerprint", "start_fingerprint", "batch_size", "learning_rate", "seed")


def checkpoint_path(output):
    """The checkpoint file of a fine-tuning run whose model goes to ``output``."""
    return os.path.splitext(os.fspath(output))[0] + ".checkpoint.h5"


def fine_tune(model, dataset, epochs, checkpoint=None, batch_size=REFERENCE_BATCH_SIZE,
              learning_rate=REFERENCE_LEARNING_RATE, seed=0, verbose=2, log=print, what="a fine-tuning run",
              identity=None, train_images=None, train_data=None, compile_fn=None, batches=None):
    """Trains every weight of ``model`` for ``epochs`` epochs on ``dataset``'s training set (the first
    ``train_images`` if given); returns the per-epoch history (loss, accuracy, test accuracy, seconds).

    ``checkpoint``: a file written after every epoch and resumed from (a checkpoint of another start model, data
    or recipe is refused, naming the difference); ``identity``: more settings that must match on resume (e.g. the
    compression rates, a recipe).

    Other recipes than the reference one (e.g. the Random Spiking paper's): ``train_data`` = (x, y) replaces the
    training set (y may be soft labels), ``compile_fn(model)`` compiles with another optimizer / loss (its metrics
    should include ``accuracy`` for the history), ``batches(x, y, batch_size, seed, epoch)`` returns the epoch's
    input to ``model.fit`` (e.g. an augmented ``tf.data.Dataset``; default: the arrays, shuffled).
    """
    epochs = checks.count(epochs, "epochs", minimum=1)
    check_training_settings(epochs, batch_size, learning_rate)
    x, y = (dataset.x_train, dataset.y_train) if train_data is None else train_data
    if train_images is not None:
        count = checks.count(train_images, "train_images", minimum=1)
        x, y = x[:count], y[:count]
    run = {"train_fingerprint": checkpoints.data_fingerprint(x, y),
           "start_fingerprint": checkpoints.weights_fingerprint(model), "batch_size": int(batch_size),
           "learning_rate": float(learning_rate), "seed": int(seed), **(identity or {})}
    if compile_fn is None:
        compile_reference(model, learning_rate)
    else:
        compile_fn(model)
    model.optimizer.build(model.trainable_variables)
    groups = {"weights": model.weights, "optimizer": model.optimizer.variables}
    state = None
    if checkpoint is not None:
        state = checkpoints.resume(checkpoint, run, sorted(set(IDENTITY_KEYS) | set(identity or {})), groups, what,
                                   epochs)
    start, history = (state["epoch"], state["history"]) if state else (0, [])
    if state:
        log(f"resuming from {checkpoint} after epoch {start}")
    progress = [StepProgress(total_epochs=epochs)] if verbose == 2 else []
    for epoch in range(start, epochs):
        began = time.time()
        start_epoch(model, seed, epoch)
        if batches is None:
            logs = model.fit(x, y, batch_size=int(batch_size), initial_epoch=epoch, epochs=epoch + 1, shuffle=True,
                             verbose=keras_verbosity(verbose), callbacks=progress).history
        else:
            logs = model.fit(batches(x, y, int(batch_size), seed, epoch), initial_epoch=epoch, epochs=epoch + 1,
                             shuffle=False, verbose=keras_verbosity(verbose), callbacks=progress).history
        record = {"epoch": epoch + 1, "loss": float(logs["loss"][-1]),
                  **({"accuracy": float(logs["accuracy"][-1])} if "accuracy" in logs else {}),
                  "test_accuracy": metrics.accuracy(model, dataset.x_test, dataset.y_test),
                  "seconds": round(time.time() - began, 1)}
        history.append(record)
        if checkpoint is not None:
            checkpoints.save(checkpoint, {"settings": run, "epoch": epoch + 1, "history": history}, groups)
        trained = f", training accuracy {record['accuracy']:.4f}" if "accuracy" in record else ""
        log(f"epoch {epoch + 1}/{epochs} of {what}: loss {record['loss']:.4f}{trained}, test accuracy "
            f"{record['test_accuracy']:.4f}, {record['seconds']:.0f} s")
    return history
