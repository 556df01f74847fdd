"""Substitute-model black-box attack (Papernot et al. 2017, "Practical black-box attacks against machine
learning", Algorithm 1, eq. 4, section 6's periodic step size), as the hash / gradient-inhibition paper
(paper 004, section V.A.3.b and Table III) uses it: sub-FGSM (untargeted) and sub-C&W (targeted).

The attacker sees the oracle's *labels* only (``argmax model(x, training=False)``, batched forward calls;
one image sent = one query). Substitute training (Algorithm 1), for ``rho = 0 .. rounds - 1``:

1. label the points of ``S_rho`` that have no label yet with the oracle (all ``num_seed`` seeds at rho = 0,
   afterwards the new half only);
2. train the substitute F on ``S_rho`` and those labels for ``substitute_epochs`` epochs (the weights carry
   over from round to round);
3. except after the last round: ``S_{rho+1} = S_rho U {clip(x + lambda_rho * sign(dF_{O(x)}(x)/dx))}``
   (eq. 4, Jacobian-based dataset augmentation; doubles the set) with ``lambda_rho = lmbda *
   (-1)^floor(rho / tau)`` (the periodic step size of section 6).

The augmentation after the last round would never be labelled or trained on, so it is skipped: the oracle
answers ``num_seed * 2^(rounds - 1)`` queries in total (150 seeds, 5 rounds: 2,400). The derivative is taken
of ``log F_label`` (F = softmax of the substitute's logits), which has the sign of ``dF_label/dx`` because
``F_label > 0`` but does not underflow when F saturates. Then FGSM (:mod:`.fgsm`) or C&W-L2
(:mod:`.cw_l2`) is run on the substitute (white-box) and its images are returned; whether they transfer is
judged on the oracle by the caller. Paper 004 counts success as the oracle's misclassification
(untargeted) or the oracle predicting the target (targeted, 9 targets x 100 images: 32.22% = 290/900).

Defaults and where they come from:
- ``num_seed`` 150 (paper 004: "the first 150 images from the test dataset"; Papernot: 150 test images);
- ``rounds`` 5 (paper 004: "five Jacobian augmentation epochs", read as CleverHans's ``data_aug`` = rho_max
  of Algorithm 1: 5 trainings, 4 augmentations; Papernot used 6);
- ``lmbda`` 0.1, ``tau`` 3 (Papernot sections 5-6; REFERENCE section 10);
- ``substitute_epochs`` 10 per round, Adam learning rate 1e-3, batch 128 (CleverHans's ``mnist_blackbox``
  tutorial, the code paper 004 says it used; Papernot also trains 10 epochs per round), seeded Glorot
  initialisation and shuffling (``substitute_seed``);
- substitutes (paper 004): FC1000-FC1000-FC10 (ReLU) for any input that is not 3-channel, and
  Conv32(5x5)-Conv32(5x5)-FC512-FC10 (ReLU, ``valid`` padding, no pooling: none is stated) for
  (H, W, 3) inputs; the output layer has the oracle's number of classes;
- ``eps`` 0.3: paper 004 does not state the sub-FGSM eps; 0.3 is the FGSM eps of CleverHans's
  ``mnist_blackbox`` tutorial and of Papernot's MNIST experiments.
- sub-C&W: ``confidence`` 0 (Carlini's and CleverHans's default; paper 004 gives none), learning rate 0.1,
  100 iterations, 5 binary-search steps, initial c 1e-2: the substitute is a small deterministic model on
  which C&W converges within 100 steps of 0.1 (the HRS paper's setting, preset ``hrs_cw_l2``); five search
  steps from c = 1e-2 span c up to 1e2. Measured on 30 MNIST images against a substitute: 12 s, all reach
  the target on the substitute, median L2 2.45; Carlini's 9 steps x 1000 iterations at 1e-2: 82 s, all
  reach it, L2 2.23, the same transfer to the oracle (3%).

The substitute is trained once per (oracle object, seed images (SHA-256 of their bytes), settings,
``substitute_seed``) and cached on the oracle (``oracle.__dict__``, like :func:`.gradients.compiled`), so the
batches of an evaluation share one substitute: ``stats["queries"]`` then holds, for every example, the
oracle queries spent training that shared substitute (the same number for all examples of a run, also
for batches that found it cached); the final judging is not counted.

Measured (runs/base_mnist.h5, 99.07% clean; defaults; seeds = test images 500..649, attacked = test 0..499):
substitute agreement with the oracle 86% (test 0..999), sub-FGSM transfer 24.4% (random +-0.3 sign noise:
2.0-2.4%; white-box FGSM on the oracle: 77.4%); paper 004 reports 62.7% on its MNIST model. Sub-C&W
(9 targets x 10 images) reaches the target on the oracle for 0% at confidence 0 and 25.6% at confidence 20
(paper 004: 32.22%, confidence not stated). Seeds from test images 9850..9999 instead give 57.5% agreement
and 17.8% transfer: the last 5,000 MNIST test images come from other writers than the first 5,000.

Deviations: (1) the seed of the substitute is the setting ``substitute_seed`` (default 0), not the
per-call ``seed`` of other attacks: the evaluation harness gives each batch ``seed + batch index``, which
would retrain the substitute for every batch. (2) New points are clipped to ``[clip_min, clip_max]`` (the
paper and CleverHans do not clip). (3) The step sign follows Papernot's ``(-1)^floor(rho / tau)`` (positive
first); CleverHans's tutorial uses ``-lambda`` for rho < 3 and ``+lambda`` afterwards. (4) One Adam state
is kept across rounds (CleverHans builds a new Adam optimizer per round). (5) Reservoir sampling (Papernot
section 6) is not implemented (paper 004 does not use it). ``seed_images=None`` falls back on the first
``num_seed`` images of ``x`` (the attacked images themselves; for direct calls only, a harness passes
held-out attacker data). CleverHans 4 has no TF2 version of this attack (REFERENCE section 7; its TF1
tutorial ``mnist_blackbox`` is gone), so it is written from the paper.
"""

import hashlib

import keras
import numpy as np
import tensorflow as tf

from hrs_tf import checks
from hrs_tf.attacks import common, gradients
from hrs_tf.attacks.cw_l2 import PARAMETERS as CW_PARAMETERS
from hrs_tf.attacks.cw_l2 import cw_l2 as _cw_l2
from hrs_tf.attacks.fgsm import fgsm as _fgsm
from hrs_tf.attacks.registry import Parameter, declare
from hrs_tf.errors import ConfigError, ModelError
from hrs_tf.layers import stochastic

NUM_SEED = 150
ROUNDS = 5
LMBDA = 0.1
TAU = 3
SUBSTITUTE_EPOCHS = 10
BATCH_SIZE = 128
LEARNING_RATE = 1e-3
ORACLE_BATCH = 500  # images per oracle call
AUGMENT_BATCH = 256  # images per Jacobian batch
_CACHE_ATTRIBUTE = "_hrs_tf_substitutes"
_MAX_CACHED = 4


# -- the pieces of Algorithm 1 -------------------------------------------------------------------------
def lambda_schedule(k, lmbda=LMBDA, tau=TAU):
    """``lambda_k = lmbda * (-1)^floor(k / tau)``: the step of augmentation ``k`` (Papernot section 6)."""
    return float(lmbda) * (-1.0) ** (int(k) // int(tau))


def oracle_labels(oracle, x, batch_size=ORACLE_BATCH, return_classes=False):
    """The oracle's labels (argmax of ``oracle(x, training=False)``) in forward batches; int32 numpy (and the
    number of classes with ``return_classes``). Eager calls, one per batch, so a wrapper around the oracle
    sees (and may count) every image."""
    labels, num_classes = [], None
    for i in range(0, len(x), batch_size):
        out = oracle(tf.constant(x[i:i + batch_size]), training=False)
        if len(out.shape) != 2:
            raise ModelError(f"model {getattr(oracle, 'name', '?')!r} outputs shape {tuple(out.shape)}; the substitute "
                             "attack needs class scores (N, classes)")
        num_classes = int(out.shape[-1])
        labels.append(np.argmax(common.as_numpy(out), axis=1))
    labels = np.concatenate(labels).astype(np.int32)
    return (labels, num_classes) if return_classes else labels


def _log_probability(logits, y):
    return tf.reduce_sum(tf.one_hot(y, tf.shape(logits)[-1], dtype=logits.dtype) * tf.nn.log_softmax(logits), -1)


_log_probability.key = ("substitute_log_probability",)


def jacobian_augmentation(substitute, x, labels, lmbda, clip_min=0.0, clip_max=1.0):
    """Papernot eq. 4: ``x`` followed by ``clip(x + lmbda * sign(d log F_label(x) / dx))`` (twice as many
    images; F = softmax of the substitute's logits; the sign equals that of ``dF_label / dx``)."""
    clip_min, clip_max = common.check_box(clip_min, clip_max)
    lmbda = checks.number(lmbda, "lmbda")
    x = np.asarray(common.as_numpy(x), np.float32)
    labels = common.check_labels(labels, len(x), name="labels")

    def build():
        def step(x, y, lmbda):
            _, grad, _ = gradients.value_and_grad(substitute, _log_probability, x, y)
            return common.clip_pixels(x + lmbda * tf.sign(grad), clip_min, clip_max)

        return step

    step = gradients.compiled(substitute, ("jacobian_augmentation", clip_min, clip_max), build)
    new = []
    for i in range(0, len(x), AUGMENT_BATCH):  # every batch padded to AUGMENT_BATCH rows: one trace
        xb, yb = x[i:i + AUGMENT_BATCH], labels[i:i + AUGMENT_BATCH]
        pad = AUGMENT_BATCH - len(xb)
        xb = np.concatenate([xb, np.full((pad,) + x.shape[1:], clip_min, np.float32)])
        yb = np.concatenate([yb, np.zeros(pad, np.int32)])
        new.append(step(tf.constant(xb), tf.constant(yb), tf.constant(lmbda, tf.float32)).numpy()[:AUGMENT_BATCH - pad])
    return np.concatenate([x] + new)


def build_substitute(input_shape, num_classes, seed=0):
    """Paper 004's substitute for ``input_shape``: Conv32(5x5)-Conv32(5x5)-FC512-FC``num_classes`` for
    (H, W, 3) images, FC1000-FC1000-FC``num_classes`` otherwise (ReLU; logits out; seeded Glorot)."""
    input_shape = tuple(int(d) for d in input_shape)
    seeds = iter(range(int(seed) * 10, int(seed) * 10 + 10))
    init = lambda: keras.initializers.GlorotUniform(seed=next(seeds))  # noqa: E731
    L = keras.layers
    if len(input_shape) == 3 and input_shape[-1] == 3:
        body = [L.Conv2D(32, 5, activation="relu", kernel_initializer=init()),
                L.Conv2D(32, 5, activation="relu", kernel_initializer=init()),
                L.Flatten(), L.Dense(512, activation="relu", kernel_initializer=init())]
        name = "substitute_conv"
    else:
        body = [L.Flatten(), L.Dense(1000, activation="relu", kernel_initializer=init()),
                L.Dense(1000, activation="relu", kernel_initializer=init())]
        name = "substitute_fc"
    return keras.Sequential([keras.Input(input_shape)] + body + [L.Dense(num_classes, kernel_initializer=init())],
                            name=name)


def _trainer(substitute, input_shape):
    """A compiled Adam step (learning rate :data:`LEARNING_RATE`) on the sparse cross-entropy of the logits."""
    optimizer = keras.optimizers.Adam(LEARNING_RATE)
    optimizer.build(substitute.trainable_variables)

    @tf.function(input_signature=[tf.TensorSpec((None,) + tuple(input_shape), tf.float32),
                                  tf.TensorSpec((None,), tf.int32)])
    def step(x, y):
        with tf.GradientTape() as tape:
            logits = substitute(x, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        grads = tape.gradient(loss, substitute.trainable_variables)
        optimizer.apply_gradients(zip(grads, substitute.trainable_variables))
        return loss

    return step


def train_substitute(oracle, seed_images, rounds=ROUNDS, lmbda=LMBDA, tau=TAU, substitute_epochs=SUBSTITUTE_EPOCHS,
                     seed=0, clip_min=0.0, clip_max=1.0):
    """Papernot Algorithm 1 from ``seed_images`` (all of them): returns ``(substitute, queries)``, a Keras
    model giving logits and the number of images the oracle labelled (``len(seed_images) * 2^(rounds - 1)``)."""
    rounds = checks.count(rounds, "rounds", minimum=1)
    lmbda = checks.positive(lmbda, "lmbda")
    tau = checks.count(tau, "tau", minimum=1)
    substitute_epochs = checks.count(substitute_epochs, "substitute_epochs", minimum=1)
    seed = checks.count(seed, "substitute_seed")
    clip_min, clip_max = common.check_box(clip_min, clip_max)
    if isinstance(oracle, (list, tuple)):
        raise ConfigError("the substitute attack queries one black-box model, not a list of models")
    points = common.check_images(oracle, seed_images, clip_min, clip_max)
    labels, num_classes = oracle_labels(oracle, points, return_classes=True)
    queries = len(points)
    substitute = build_substitute(points.shape[1:], num_classes, seed)
    step = _trainer(substitute, points.shape[1:])
    rng = np.random.default_rng(seed)
    for rho in range(rounds):
        for _ in range(substitute_epochs):
            order = rng.permutation(len(points))
            for i in range(0, len(points), BATCH_SIZE):
                batch = order[i:i + BATCH_SIZE]
                step(tf.constant(points[batch]), tf.constant(labels[batch]))
        if rho < rounds - 1:
            grown = jacobian_augmentation(substitute, points, labels, lambda_schedule(rho, lmbda, tau), clip_min, clip_max)
            new = grown[len(points):]
            labels = np.concatenate([labels, oracle_labels(oracle, new)])
            queries += len(new)
            points = grown
    return substitute, queries


def _digest(images):
    return hashlib.sha256(np.ascontiguousarray(images, np.float32).tobytes()).hexdigest()


def cached_substitute(oracle, seed_images, rounds=ROUNDS, lmbda=LMBDA, tau=TAU, substitute_epochs=SUBSTITUTE_EPOCHS,
                      seed=0, clip_min=0.0, clip_max=1.0):
    """:func:`train_substitute`, memoised on the oracle object per (seed images' SHA-256 and shape, settings,
    seed, the randomness modes of the oracle's stochastic layers -- a substitute of a fixed realisation is not
    one of the deployed model): ``(substitute, queries)``. An oracle without a ``__dict__`` trains every time."""
    images = np.asarray(common.as_numpy(seed_images), np.float32)
    settings = (checks.count(rounds, "rounds", minimum=1), checks.positive(lmbda, "lmbda"),
                checks.count(tau, "tau", minimum=1), checks.count(substitute_epochs, "substitute_epochs", minimum=1),
                checks.count(seed, "substitute_seed")) + common.check_box(clip_min, clip_max)
    modes = tuple((layer.name, layer.randomness) for layer in stochastic.stochastic_layers(oracle))
    key = (_digest(images), images.shape, modes) + settings
    try:
        cache = oracle.__dict__.setdefault(_CACHE_ATTRIBUTE, {})  # plain attribute: not tracked by Keras
    except AttributeError:
        cache = {}
    if key not in cache:
        if len(cache) >= _MAX_CACHED:
            cache.clear()
        cache[key] = train_substitute(oracle, images, *settings)
    return cache[key]


def _substitute_for(model, x, y, targeted, name, rounds, lmbda, tau, num_seed, substitute_epochs, substitute_seed,
                    seed_images, clip_min, clip_max):
    """Checked ``(x, substitute, queries)`` for attack ``name`` (the shared front of both attacks)."""
    clip_min, clip_max = common.check_box(clip_min, clip_max)
    if isinstance(model, (list, tuple)):
        raise ConfigError(f"{name} queries one black-box model, not a list of models")
    if targeted and y is None:
        raise ConfigError(f"{name}: a targeted attack needs the targets y")
    rounds = checks.count(rounds, "rounds", minimum=1)
    lmbda = checks.positive(lmbda, "lmbda")
    tau = checks.count(tau, "tau", minimum=1)
    substitute_epochs = checks.count(substitute_epochs, "substitute_epochs", minimum=1)
    substitute_seed = checks.count(substitute_seed, "substitute_seed")
    num_seed = checks.count(num_seed, "num_seed", minimum=1)
    x = common.check_images(model, x, clip_min, clip_max)
    pool = x if seed_images is None else common.check_images(model, seed_images, clip_min, clip_max)
    if pool.shape[1:] != x.shape[1:]:
        raise ConfigError(f"seed images have shape {pool.shape[1:]}, the attacked images {x.shape[1:]}")
    if num_seed > len(pool):
        where = "images attacked (seed_images=None uses them)" if seed_images is None else "seed images given"
        raise ConfigError(f"num_seed={num_seed} exceeds the {len(pool)} {where}")
    substitute, queries = cached_substitute(model, pool[:num_seed], rounds, lmbda, tau, substitute_epochs,
                                            substitute_seed, clip_min, clip_max)
    return x, substitute, queries


def _record(stats, queries, n):
    if stats is not None:
        stats["queries"] = np.full(n, queries, np.int64)


# -- the attacks ---------------------------------------------------------------------------------------
def substitute_fgsm(model, x, y=None, targeted=False, eps=0.3, rounds=ROUNDS, lmbda=LMBDA, tau=TAU, num_seed=NUM_SEED,
                    substitute_epochs=SUBSTITUTE_EPOCHS, substitute_seed=0, seed_images=None, clip_min=0.0,
                    clip_max=1.0, stats=None):
    """Sub-FGSM: FGSM (Goodfellow et al. eq. 3) on the Papernot substitute of the black box ``model``.

    ``y`` = target if ``targeted`` else true label (None: the substitute's prediction, no oracle query).
    """
    eps = checks.fraction(eps, "eps")
    x, substitute, queries = _substitute_for(model, x, y, targeted, "substitute_fgsm", rounds, lmbda, tau, num_seed,
                                             substitute_epochs, substitute_seed, seed_images, clip_min, clip_max)
    x_adv = _fgsm(substitute, x, y, eps=eps, targeted=targeted, clip_min=clip_min, clip_max=clip_max)
    _record(stats, queries, len(x))
    return x_adv


def substitute_cw_l2(model, x, y=None, targeted=False, confidence=0.0, learning_rate=0.1, binary_search_steps=5,
                     max_iterations=100, initial_const=1e-2, rounds=ROUNDS, lmbda=LMBDA, tau=TAU, num_seed=NUM_SEED,
                     substitute_epochs=SUBSTITUTE_EPOCHS, substitute_seed=0, seed_images=None, clip_min=0.0,
                     clip_max=1.0, stats=None):
    """Sub-C&W: C&W-L2 (Carlini & Wagner section V.A) on the Papernot substitute of the black box ``model``.

    ``y`` = target if ``targeted`` else true label (None: the substitute's prediction, no oracle query).
    Examples where C&W fails on the substitute come back unchanged.
    """
    kappa, learning_rate, binary_search_steps, max_iterations, initial_const = common.ConstantSearch.check_settings(
        confidence, learning_rate, binary_search_steps, max_iterations, initial_const)
    x, substitute, queries = _substitute_for(model, x, y, targeted, "substitute_cw_l2", rounds, lmbda, tau, num_seed,
                                             substitute_epochs, substitute_seed, seed_images, clip_min, clip_max)
    x_adv = _cw_l2(substitute, x, y, targeted=targeted, confidence=kappa, learning_rate=learning_rate,
                   binary_search_steps=binary_search_steps, max_iterations=max_iterations, initial_const=initial_const,
                   clip_min=clip_min, clip_max=clip_max)
    _record(stats, queries, len(x))
    return x_adv


SUBSTITUTE_PARAMETERS = {
    "rounds": Parameter("int", "substitute training rounds rho (Papernot Algorithm 1; the seed set doubles between rounds)", minimum=1),
    "lmbda": Parameter("float", "Jacobian augmentation step lambda in pixel units"),
    "tau": Parameter("int", "lambda's sign flips every tau augmentations", minimum=1),
    "num_seed": Parameter("int", "seed images the substitute starts from", minimum=1),
    "substitute_epochs": Parameter("int", "substitute training epochs per round", minimum=1),
    "substitute_seed": Parameter("int", "seed of the substitute's initialisation and shuffling"),
}
declare("substitute_fgsm", substitute_fgsm, norm="linf",
        summary="black box: FGSM on a substitute trained on oracle labels with Jacobian augmentation",
        reference="Papernot et al. 2017, Algorithm 1; hash paper Table III",
        parameters={"eps": Parameter("fraction", "L-inf bound in [0, 1] pixel units, e.g. 0.3 or 8/255"),
                    **SUBSTITUTE_PARAMETERS})
declare("substitute_cw_l2", substitute_cw_l2, norm="l2",
        summary="black box: C&W-L2 on a substitute trained on oracle labels with Jacobian augmentation",
        reference="Papernot et al. 2017, Algorithm 1; hash paper Table III",
        parameters={**{k: CW_PARAMETERS[k] for k in ("confidence", "learning_rate", "binary_search_steps",
                                                       "max_iterations", "initial_const")},
                    **SUBSTITUTE_PARAMETERS})
