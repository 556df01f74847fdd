"""Adversarial reprogramming of a frozen target model (HRS paper section 7 and appendix E).

An attacker learns an *input transform* that makes a frozen target classifier (trained on task A) solve
task B, with the identity *output mapping* (class ``i`` of task B is read from logit ``i`` of the target).
As in the published code (``defend_adversarial_reprogramming.py``, REFERENCE section 1):

- transform = ``ZeroPadding2D`` -> :class:`LocallyConnected2D` (target-channels filters, ``k x k``, relu)
  -> ``tanh``; the padding is chosen so that the ``valid`` locally connected output has the target's
  spatial size (MNIST 28x28 -> CIFAR 32x32 with 3x3: padding 3; 28x28 -> 28x28 with 3x3: padding 1). An
  odd total padding (an even kernel) puts the extra row / column at the bottom / right;
- ``tanh`` of a ReLU output lies in ``[0, 1)`` (``1.0`` once float32 saturates), inside the targets'
  ``[0, 1]`` pixel range, so the output is fed to the target as is (the reference does the same; nothing
  is rescaled);
- the target is frozen and called in inference mode (the reference sets learning phase 0: train-time
  dropout is off), while the project's stochastic defense layers stay in ``random`` mode whatever the
  training flag: the defense is active while the attacker trains;
- SGD lr 0.01, momentum 0.9, Nesterov, Keras-2 decay 1e-6 per iteration, batch 128, softmax
  cross-entropy on the logits.

Reference bugs not copied: it trains on the first 600 training images (``percentage=0.01``) and feeds
integer labels to a one-hot loss. Here the whole source training set is used, with integer labels and
a sparse loss throughout.

Randomness: an HRS target in ``batch`` granularity draws one path per training mini-batch, as the
reference; accuracy is measured with every test image meeting its own randomness
(:func:`hrs_tf.layers.stochastic.per_example`: an HRS switch draws per example while accuracy is measured;
the other stochastic layers draw per example anyway).

Training is resumable per epoch: after every epoch one checkpoint file (:mod:`hrs_tf.training.checkpoint`)
holds the transform weights, the optimiser state, the states of the random generators, the history so far and
the settings; a rerun with the same settings continues after the last finished epoch (and may ask for
more epochs), a rerun with other settings is refused. Mini-batch order is a fixed function of
``(seed, epoch)``, so a resumed run reproduces an uninterrupted one.
"""

import time

import keras
import numpy as np
import tensorflow as tf

from hrs_tf import training
from hrs_tf.errors import ModelError
from hrs_tf.evaluation import metrics
from hrs_tf.experiments.reprogramming.transform import (OUTPUT_MAPPING, build_input_transform, check_kernel_size,
                                                        check_target, reprogram, transform_padding)
from hrs_tf.layers import stochastic
from hrs_tf.training import checkpoint as checkpoints

# Settings that determine the result: a resume with any of them changed is refused. ``epochs`` is not
# among them: a finished run can be extended.
IDENTITY_KEYS = ("target", "target_fingerprint", "source_dataset", "train_fingerprint", "test_fingerprint",
                 "kernel_size", "batch_size", "learning_rate", "seed")


def _train_step_function(model, variables, optimizer):
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    spec = model.input_shape[1:]

    @tf.function(input_signature=[tf.TensorSpec((None,) + tuple(spec), tf.float32), tf.TensorSpec((None,), tf.int64)])
    def step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=False)  # target in inference mode; stochastic layers stay random
            loss = loss_fn(y, logits)
        gradients = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(gradients, variables))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=-1), y), tf.float32))
        return loss, correct

    return step


def epoch_order(seed, epoch, n):
    """The mini-batch order of epoch ``epoch`` (1-based): a fixed permutation of ``range(n)``."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def run_settings(target_model, source, epochs, kernel_size=3, batch_size=training.REFERENCE_BATCH_SIZE,
                 learning_rate=training.REFERENCE_LEARNING_RATE, seed=0, target_description=None):
    """The settings of a reprogramming run (checked; ConfigError / ModelError before any work): what its record and
    checkpoint hold and a resume compares (:data:`IDENTITY_KEYS`), plus ``epochs``."""
    training.check_training_settings(epochs, batch_size, learning_rate)
    kernel_size = check_kernel_size(kernel_size)
    transform_padding(source.input_shape, check_target(target_model), kernel_size)
    return {
        "target": target_description or target_model.name,
        "target_fingerprint": checkpoints.weights_fingerprint(target_model),
        "source_dataset": source.name,
        "train_fingerprint": checkpoints.data_fingerprint(source.x_train, source.y_train),
        "test_fingerprint": checkpoints.data_fingerprint(source.x_test, source.y_test),
        "kernel_size": kernel_size,
        "batch_size": int(batch_size),
        "learning_rate": float(learning_rate),
        "seed": int(seed),
        "epochs": int(epochs),
    }


def train_reprogramming(target_model, source, epochs, kernel_size=3, batch_size=training.REFERENCE_BATCH_SIZE,
                        learning_rate=training.REFERENCE_LEARNING_RATE, seed=0, checkpoint_path=None,
                        target_description=None, target_label=None, eval_batch_size=500, verbose=1):
    """Reprograms the frozen ``target_model`` to classify ``source`` (an :class:`hrs_tf.data.Dataset`).

    Trains the input transform of :func:`build_input_transform` for ``epochs`` epochs over the whole
    source training set (mini-batches of ``batch_size``, integer labels, sparse softmax cross-entropy,
    reference SGD) and measures the reprogrammed model's accuracy on the source test set after every
    epoch (and once before training). With ``checkpoint_path`` the run is resumable per epoch (see the
    module docstring). ``target_description`` names the target in the record and in the resume check
    (default: the model's name); ``target_label`` is its name in reports (default: the description).

    Returns ``(transform, record)``; ``record`` is JSON-ready: settings, per-epoch ``history`` (train loss
    and accuracy, test accuracy, seconds), ``test_accuracy`` after the last epoch, timings and versions.
    """
    settings = run_settings(target_model, source, epochs, kernel_size, batch_size, learning_rate, seed,
                            target_description)
    epochs, batch_size, seed, kernel_size = (settings[k] for k in ("epochs", "batch_size", "seed", "kernel_size"))
    target_shape = check_target(target_model)

    keras.utils.set_random_seed(seed)
    transform = build_input_transform(source.input_shape, target_shape, kernel_size)
    model = reprogram(target_model, transform)
    if {id(v) for v in model.trainable_variables} != {id(v) for v in transform.trainable_variables}:
        raise ModelError(f"target model {target_model.name!r} still has trainable weights after freezing")
    variables = transform.trainable_variables
    optimizer = training.reference_optimizer(learning_rate)
    optimizer.build(variables)
    groups = {"transform": transform.weights, "optimizer": optimizer.variables,
              "seed_states": checkpoints.seed_states(model)}
    x_test, y_test = source.x_test, source.y_test

    def test_accuracy():  # every test image its own randomness
        with stochastic.per_example(target_model):
            return metrics.accuracy(model, x_test, y_test, eval_batch_size)

    state = {"settings": settings, "epoch": 0, "history": [], "initial_test_accuracy": None, "train_seconds": 0.0}
    resumed_from = 0
    if checkpoint_path:
        restored = checkpoints.resume(checkpoint_path, settings, IDENTITY_KEYS, groups, "a reprogramming run", epochs)
        if restored:
            state = dict(restored, settings=settings)
            resumed_from = state["epoch"]
            if verbose:
                print(f"resuming from {checkpoint_path} after epoch {resumed_from}/{epochs}", flush=True)
    if state["initial_test_accuracy"] is None:
        state["initial_test_accuracy"] = test_accuracy()
        if verbose:
            print(f"epoch 0/{epochs}: test accuracy {state['initial_test_accuracy']:.4f} (untrained transform)", flush=True)

    step = _train_step_function(model, variables, optimizer)
    x_train, y_train = source.x_train, np.asarray(source.y_train, np.int64)
    n = len(x_train)
    for epoch in range(state["epoch"] + 1, epochs + 1):
        start = time.time()
        order = epoch_order(seed, epoch, n)
        total_loss, total_correct = 0.0, 0.0
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            loss, correct = step(tf.constant(x_train[idx]), tf.constant(y_train[idx]))
            total_loss += float(loss) * len(idx)
            total_correct += float(correct)
        train_seconds = time.time() - start
        accuracy = test_accuracy()
        record = {"epoch": epoch, "loss": total_loss / n, "train_accuracy": total_correct / n,
                  "test_accuracy": accuracy, "seconds": round(time.time() - start, 3)}
        state["history"].append(record)
        state["epoch"] = epoch
        state["train_seconds"] = round(state["train_seconds"] + train_seconds, 3)
        if checkpoint_path:
            checkpoints.save(checkpoint_path, state, groups)
        if verbose:
            print(f"epoch {epoch}/{epochs}: loss {record['loss']:.4f}, train accuracy {record['train_accuracy']:.4f}, "
                  f"test accuracy {accuracy:.4f} ({record['seconds']:.0f} s)", flush=True)

    history = state["history"]
    record = {
        "kind": "reprogramming",
        **settings,
        "data_source": source.source,
        "num_train": int(n),
        "num_test": int(len(x_test)),
        "source_shape": list(source.input_shape),
        "target_shape": list(target_shape),
        "padding": [list(p) for p in transform_padding(source.input_shape, target_shape, kernel_size)],
        "transform_params": int(sum(np.prod(w.shape) for w in transform.weights)),
        "output_mapping": OUTPUT_MAPPING,
        "optimizer": f"SGD(lr={float(learning_rate)}, momentum={training.REFERENCE_MOMENTUM}, nesterov=True, "
                     f"inverse-time decay {training.REFERENCE_DECAY}/iteration)",
        "loss": "sparse softmax cross-entropy on the target's logits",
        "stochastic_layers": sorted({type(layer).__name__ for layer in stochastic.stochastic_layers(target_model)}),
        "realisation_counts": stochastic.realisation_counts(target_model),
        "target_label": target_label or settings["target"],
        "evaluation": "each test image its own randomness",
        "initial_test_accuracy": state["initial_test_accuracy"],
        "history": history,
        "test_accuracy": history[-1]["test_accuracy"],
        "best_test_accuracy": max(h["test_accuracy"] for h in history),
        "resumed_from_epoch": resumed_from,
        "train_seconds": state["train_seconds"],
        "versions": training.versions(),
    }
    return transform, record
