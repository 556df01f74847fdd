"""Madry PGD adversarial training (Madry et al. 2018, "Towards deep learning models resistant to adversarial
attacks", eq. 2-3; REFERENCE section 3), resumable after a kill.

Every mini-batch is replaced by L-inf PGD examples crafted on the current model (untargeted cross-entropy,
uniform random start in the eps-ball, ``pgd_steps`` sign steps of ``pgd_step_size``, projection and [0, 1]
clip after each step), through the project's one gradient path (:func:`hrs_tf.attacks.gradients.
value_and_grad`, model in inference mode while crafting), then the model takes one SGD step on them in
training mode (reference recipe: SGD 0.01, momentum 0.9, Nesterov, batch 128). ``adv_fraction < 1`` mixes:
the first ``round(adv_fraction * batch)`` examples of each shuffled batch are adversarial, the rest clean
(Madry et al. train on 100% adversarial examples, the default). Crafting and the update run in one
``tf.function`` per batch. ``eps_warmup_epochs = W > 0`` grows the training bound linearly from eps / (W x
batches per epoch) at the first batch to eps at the end of epoch W (the PGD step size in proportion), then keeps
it: the eps ramp of Gowal et al. 2018 ("On the effectiveness of interval bound propagation"). It lets a model learn
that stays at chance under eps 0.3 from the first batch (the hash paper's seven-layer CNN with this SGD recipe: loss
ln 10 for 2 epochs; with 2 warm-up epochs 99.21% clean after 8; :func:`warmup_eps`).

Registered as the defense ``adv[:EPS,steps=N,warmup=W]`` (eps default per data set, :data:`DEFAULT_EPS`; N PGD
steps, default 40 as Madry's MNIST recipe; W warm-up epochs, default 0).

Checkpoint (:mod:`hrs_tf.training.checkpoint`): after every epoch one file is written atomically with the
settings, the epoch number, the history, the model weights and the optimizer state (momenta, iteration
count). A rerun with the same settings resumes at the next epoch; the shuffling order, random starts, dropout
masks and warm-up bounds of an epoch depend only on (seed, epoch), so a resumed run ends with the same weights as
an uninterrupted one. A rerun with other settings is refused (``epochs`` may grow: training continues).
"""

import time

import keras
import numpy as np
import tensorflow as tf

from hrs_tf import checks, models, training
from hrs_tf.attacks import gradients
from hrs_tf.attacks.pgd import loop as pgd_loop
from hrs_tf.defenses.registry import TRAINED, Argument, Defense, register, write_model
from hrs_tf.evaluation import metrics
from hrs_tf.layers import stochastic
from hrs_tf.training import checkpoint as checkpoints
from hrs_tf.training.fine_tuning import checkpoint_path  # the file beside the model, as every resumable trainer's

# Settings that determine the trained weights: a resume with any of them changed is refused.
IDENTITY_KEYS = ("dataset", "train_fingerprint", "architecture", "dropout_rate", "eps", "pgd_steps", "pgd_step_size",
                 "adv_fraction", "random_start", "eps_warmup_epochs", "batch_size", "learning_rate", "seed")
DEFAULT_EPS = {"mnist": 0.3, "fashion_mnist": 0.1, "cifar10": 2 / 255}  # training bound when the spec gives none
DEFAULT_STEPS = 40  # Madry et al.'s MNIST recipe (CIFAR-10: 7)
DEFAULT_PATH_LENGTH = 4 / 3  # default PGD path length in units of eps (Madry MNIST: 40 x 0.01 = 0.4 at 0.3)
PROGRESS_EVERY = 50  # batches between progress lines within an epoch


def check_settings(eps, pgd_steps, pgd_step_size, adv_fraction):
    """Checked (eps, steps, step size, fraction).

    ``pgd_step_size=None`` -> ``DEFAULT_PATH_LENGTH * eps / pgd_steps``: the steps together can travel 4/3 of
    eps, as Madry et al.'s MNIST recipe (40 steps of 0.01 at eps 0.3, exactly this default); a fixed eps / 30
    would leave a 10-step attack unable to cross the ball from its random start.
    """
    eps = checks.fraction(eps, "eps", allow_zero=False)
    pgd_steps = checks.count(pgd_steps, "pgd_steps", minimum=1)
    pgd_step_size = (DEFAULT_PATH_LENGTH * eps / pgd_steps if pgd_step_size is None
                     else checks.positive(pgd_step_size, "pgd_step_size"))
    adv_fraction = checks.fraction(adv_fraction, "adv_fraction")
    return eps, pgd_steps, pgd_step_size, adv_fraction


def warmup_eps(eps, warmup_epochs, epoch, batch, num_batches):
    """The training bound of batch ``batch`` (0-based) of epoch ``epoch`` (0-based): ``eps`` without warm-up, else
    ``eps * min(1, (epoch * num_batches + batch + 1) / (warmup_epochs * num_batches))`` (linear in the batch count,
    eps from the last batch of epoch ``warmup_epochs`` on)."""
    if not warmup_epochs:
        return float(eps)
    done = int(epoch) * int(num_batches) + int(batch) + 1
    return float(eps) * min(1.0, done / (int(warmup_epochs) * int(num_batches)))


def pgd_examples(model, x, y, eps, steps, step_size, seed, random_start=True):
    """Untargeted L-inf PGD examples on the cross-entropy (graph code; ``seed``: int64 tensor [2]): the attacks'
    PGD loop (:func:`hrs_tf.attacks.pgd.loop`) from a uniform random start drawn with ``seed``."""
    start = x
    if random_start:
        start = tf.clip_by_value(x + tf.random.stateless_uniform(tf.shape(x), seed, -eps, eps), 0.0, 1.0)
    adv = pgd_loop(model, gradients.cross_entropy(targeted=False), x, y, start, eps, step_size, steps, np.inf)
    return tf.stop_gradient(adv)


def make_train_step(model, optimizer, run):
    """The per-batch ``tf.function`` ``step(x, y, seed, eps, step_size)``: craft PGD examples at the batch's bound,
    mix, one optimizer step; returns (loss, accuracy)."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    shape = (None,) + tuple(model.input_shape[1:])

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32), tf.TensorSpec([None], tf.int32),
                                  tf.TensorSpec([2], tf.int64), tf.TensorSpec([], tf.float32),
                                  tf.TensorSpec([], tf.float32)])
    def step(x, y, seed, eps, step_size):
        inputs = x
        if run["adv_fraction"] > 0:
            adv = pgd_examples(model, x, y, eps, run["pgd_steps"], step_size, seed, run["random_start"])
            count = tf.cast(tf.round(run["adv_fraction"] * tf.cast(tf.shape(x)[0], tf.float32)), tf.int32)
            inputs = tf.concat([adv[:count], x[count:]], axis=0)
        with tf.GradientTape() as tape:
            logits = model(inputs, training=True)
            loss = loss_fn(y, logits)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y), tf.float32))
        return loss, accuracy

    return step


# -- training --------------------------------------------------------------------------------------------
def train_adversarial(dataset, checkpoint, eps, epochs, pgd_steps=40, pgd_step_size=None, adv_fraction=1.0,
                      random_start=True, eps_warmup_epochs=0, arch=None, dropout_rate=None,
                      batch_size=training.REFERENCE_BATCH_SIZE,
                      learning_rate=training.REFERENCE_LEARNING_RATE, seed=0, eval_images=500, stop_after=None,
                      log=print):
    """Madry PGD adversarial training of the base CNN of ``dataset``, checkpointed to ``checkpoint``.

    Resumes from ``checkpoint`` when it exists with the same settings. ``stop_after`` ends this call after
    that many epochs (returns ``(None, None)`` if the run is not finished); otherwise returns
    ``(model, record)`` with the history, the clean test accuracy and the PGD accuracy (the training attack,
    random start) on the first ``eval_images`` test images.
    """
    eps, pgd_steps, pgd_step_size, adv_fraction = check_settings(eps, pgd_steps, pgd_step_size, adv_fraction)
    training.check_training_settings(epochs, batch_size, learning_rate)
    eval_images = checks.count(eval_images, "eval_images", minimum=0)
    eps_warmup_epochs = checks.count(eps_warmup_epochs, "eps_warmup_epochs", minimum=0)
    architecture = models.architecture_for(dataset, arch)
    rate = architecture.dropout_rate if dropout_rate is None else float(dropout_rate)
    run = {"dataset": dataset.name, "train_fingerprint": checkpoints.data_fingerprint(dataset.x_train, dataset.y_train),
           "architecture": architecture.name, "dropout_rate": rate, "eps": eps, "pgd_steps": pgd_steps,
           "pgd_step_size": pgd_step_size, "adv_fraction": adv_fraction, "random_start": bool(random_start),
           "eps_warmup_epochs": eps_warmup_epochs, "batch_size": int(batch_size),
           "learning_rate": float(learning_rate), "seed": int(seed)}
    keras.utils.set_random_seed(seed)
    model = models.build_base_model(architecture, dropout_rate=rate)
    optimizer = training.reference_optimizer(learning_rate)
    optimizer.build(model.trainable_variables)
    groups = {"weights": model.weights, "optimizer": optimizer.variables}
    state = checkpoints.resume(checkpoint, run, IDENTITY_KEYS, groups, "an adversarial-training run", int(epochs))
    start_epoch, history = (state["epoch"], state["history"]) if state else (0, [])
    if state:
        log(f"resuming from {checkpoint} after epoch {start_epoch}")
    step = make_train_step(model, optimizer, run)
    x, y = dataset.x_train, dataset.y_train.astype(np.int32)
    num_batches = -(-len(x) // int(batch_size))
    end_epoch = int(epochs) if stop_after is None else min(int(epochs), start_epoch + int(stop_after))
    for epoch in range(start_epoch, end_epoch):
        began = time.time()
        epoch_seed = training.epoch_seed(seed, epoch)
        order = np.random.default_rng(epoch_seed).permutation(len(x))
        stochastic.reseed(model, epoch_seed)  # a resumed run draws as an uninterrupted one
        losses, accuracies, sizes = [], [], []
        for b in range(num_batches):
            idx = order[b * batch_size:(b + 1) * batch_size]
            bound = warmup_eps(eps, eps_warmup_epochs, epoch, b, num_batches)
            loss, acc = step(tf.constant(x[idx]), tf.constant(y[idx]), tf.constant([epoch_seed, b], tf.int64),
                             tf.constant(bound, tf.float32), tf.constant(pgd_step_size * bound / eps, tf.float32))
            losses.append(float(loss))
            accuracies.append(float(acc))
            sizes.append(len(idx))
            if (b + 1) % PROGRESS_EVERY == 0 and b + 1 < num_batches:
                log(f"epoch {epoch + 1}/{epochs}: batch {b + 1}/{num_batches}, loss {np.mean(losses):.4f}, "
                    + (f"eps {bound:.4g}, " if bound < eps else "") + f"{time.time() - began:.0f} s")
        record = {"epoch": epoch + 1, "loss": float(np.average(losses, weights=sizes)),
                  "train_accuracy": float(np.average(accuracies, weights=sizes)),
                  "test_accuracy": metrics.accuracy(model, dataset.x_test, dataset.y_test),
                  "seconds": round(time.time() - began, 1)}
        history.append(record)
        checkpoints.save(checkpoint, {"settings": run, "epoch": epoch + 1, "history": history}, groups)
        log(f"epoch {epoch + 1}/{epochs}: loss {record['loss']:.4f}, training-batch accuracy "
            f"{record['train_accuracy']:.4f}, clean test accuracy {record['test_accuracy']:.4f}, "
            f"{record['seconds']:.0f} s; checkpoint {checkpoint}")
    if end_epoch < int(epochs):
        return None, None
    record = dict(run, kind="adversarial_training", epochs=int(epochs), history=history,
                  optimizer=f"SGD(momentum={training.REFERENCE_MOMENTUM}, nesterov=True, inverse-time decay "
                            f"{training.REFERENCE_DECAY}/iteration)",
                  num_params=models.count_params(model),
                  test_accuracy=metrics.accuracy(model, dataset.x_test, dataset.y_test),
                  train_seconds=round(sum(h["seconds"] for h in history), 1), versions=training.versions())
    stuck, majority = at_chance(record["test_accuracy"], dataset.y_test)
    record["at_chance"] = stuck
    if stuck:
        log(f"WARNING: the adversarially trained model is at chance: clean test accuracy "
            f"{record['test_accuracy']:.2%}, the most frequent test label alone gives {majority:.2%}; PGD training "
            f"at eps {eps:g} from scratch can stay there for its first epochs: train more epochs (this run: "
            f"{int(epochs)}) or warm eps up (this run: {eps_warmup_epochs} warm-up epochs)")
    if eval_images:
        record["pgd_eval"] = robust_accuracy(model, dataset.x_test[:eval_images], dataset.y_test[:eval_images], eps,
                                             pgd_steps, pgd_step_size, seed)
        log(f"PGD accuracy (eps {eps:g}, {pgd_steps} x {pgd_step_size:g}, random start) on {eval_images} test images: "
            f"{record['pgd_eval']['accuracy']:.4f}")
    return model, record


def at_chance(accuracy, labels, margin=0.05):
    """``(stuck, majority)``: whether ``accuracy`` is within ``margin`` of (or below) ``majority``, the accuracy of
    always predicting the most frequent of ``labels`` (a model that has not learned: e.g. Madry PGD training at eps
    0.3 on MNIST from scratch, whose loss can stay at ln 10 for its first epochs)."""
    labels = np.asarray(labels, np.int64).ravel()
    majority = float(np.bincount(labels).max() / len(labels)) if len(labels) else 0.0
    return bool(float(accuracy) < majority + float(margin)), majority


def robust_accuracy(model, x, y, eps, steps, step_size, seed=0, batch_size=500):
    """Accuracy under untargeted L-inf PGD (:func:`hrs_tf.attacks.pgd`, random start)."""
    from hrs_tf import attacks

    correct = 0
    for i in range(0, len(x), batch_size):
        adv = attacks.pgd(model, x[i:i + batch_size], y[i:i + batch_size], eps=eps, eps_iter=step_size, nb_iter=steps,
                          seed=seed + i)
        correct += int(np.sum(np.argmax(np.asarray(model(adv, training=False)), -1) == y[i:i + batch_size]))
    return {"accuracy": correct / len(x), "num_images": int(len(x)), "eps": eps, "nb_iter": int(steps),
            "eps_iter": step_size, "rand_init": True}


@register
class AdversarialTraining(Defense):
    name = "adv"
    title = "Adv. training"
    summary = "Madry PGD adversarial training (L-inf, untargeted, random start), resumable per epoch"
    reference = "Madry et al. 2018; HRS section 6.1 / appendix C.5; REFERENCE section 3"
    make = TRAINED
    arguments = (Argument("eps", lambda text: checks.fraction(text, "eps", allow_zero=False), None,
                          "L-inf training bound (default 0.3 MNIST, 0.1 Fashion-MNIST, 2/255 CIFAR-10)"),
                 Argument("steps", lambda text: checks.count(text, "steps", minimum=1), DEFAULT_STEPS,
                          "PGD steps per training batch", keyword_only=True, metavar="N"),
                 Argument("warmup", lambda text: checks.count(text, "warmup", minimum=0), 0,
                          "epochs over which the training eps grows linearly to its value (0: none)", keyword_only=True,
                          metavar="W"))
    default_epochs = 20
    compared_in = {"hrs_paper": ("steps=10",)}

    def label(self, args):
        return "Adv. training"

    def train(self, args, dataset, output, *, epochs, seed=0, verbose=2, log=print, source_model=None, siblings=None,
              eval_repeats=None, **settings):
        eps = DEFAULT_EPS[dataset.name] if args["eps"] is None else args["eps"]
        model, record = train_adversarial(dataset, checkpoint_path(output), eps, epochs, pgd_steps=args["steps"],
                                          eps_warmup_epochs=args["warmup"], seed=seed, log=log, **settings)
        write_model(model, record, output)
