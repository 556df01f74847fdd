"""JSMA: the Jacobian-based saliency map attack (Papernot et al. 2016, "The limitations of deep learning
in adversarial settings", Algorithms 2-3, eq. 9-10), with the pairwise saliency map over feature pairs.

Each iteration takes, at the current image, the gradients of the target output ``alpha = dF_t/dx`` and of
the sum of the other outputs ``beta = sum_{j != t} dF_j/dx``; over all pairs ``p != q`` of features still
in the search domain it picks the pair maximising ``-(alpha_p + alpha_q) * (beta_p + beta_q)`` subject to
``alpha_p + alpha_q > 0`` and ``beta_p + beta_q < 0`` (for ``theta > 0``; signs reversed for
``theta < 0``), moves both features by ``theta`` (clipped to [0, 1]) and removes them from the domain.
It stops at the first iteration where the prediction is the target, or after ``floor(gamma * d / 2)``
iterations, or when no pair qualifies. ``F`` = logits Z for JSMA-Z, softmax probabilities for JSMA-F.
Defaults: CleverHans v3 ``SaliencyMapMethod`` (theta 1, gamma 1), as used by the defensive-dropout paper.

Departures from CleverHans v3: an example with no admissible pair stops (CleverHans then modifies feature
pair (0, 0)); untargeted mode (``targeted=False``, ``y`` = true label) is ours: the same map with the roles
swapped (raise the other classes, lower the true one) until the prediction leaves the label.
The ``d x d`` pair map is built for ``chunk_size`` examples at a time (default: ~2e7 pair scores).
JSMA takes no ``loss_fn``: its saliency map needs the per-class outputs F (or Z), not a scalar loss; the
choice of F is the ``saliency`` setting (JSMA-F / JSMA-Z, declared as two attacks).
"""

import numpy as np
import tensorflow as tf

from hrs_tf import checks
from hrs_tf.attacks import common, gradients
from hrs_tf.attacks.registry import Parameter, declare

SALIENCY = ("logits", "softmax")


def _objective(saliency, targeted):
    """Per pass: (output of the class driven up, sum of the outputs driven down)."""
    def objective(logits, y):
        out = logits if saliency == "logits" else tf.nn.softmax(logits)
        onehot = tf.one_hot(y, tf.shape(out)[-1], dtype=out.dtype)
        own = tf.reduce_sum(onehot * out, -1)
        rest = tf.reduce_sum(out, -1) - own
        return (own, rest) if targeted else (rest, own)

    objective.key = ("jsma", saliency, bool(targeted))
    objective.num_outputs = 2
    return objective


def jsma(model, x, y, targeted=True, saliency="logits", theta=1.0, gamma=1.0, eot_samples=1, chunk_size=None,
         clip_min=0.0, clip_max=1.0):
    """JSMA; ``y`` = target (``targeted``) or true label. ``saliency``: "logits" (JSMA-Z) or "softmax" (JSMA-F)."""
    checks.choice(saliency, "saliency", SALIENCY)
    theta = checks.number(theta, "theta")
    if theta == 0 or abs(theta) > 1:
        raise common.ConfigError(f"theta={theta!r} must be a non-zero change in [-1, 1]")
    gamma = checks.fraction(gamma, "gamma", allow_zero=False)
    eot_samples = checks.count(eot_samples, "eot_samples", minimum=1)
    x, y, _ = common.prepare(model, x, y, targeted, "jsma", clip_min, clip_max)
    dims = int(np.prod(x.shape[1:]))
    max_iters = int(np.floor(dims * gamma / 2))
    if chunk_size is None:
        chunk_size = max(1, int(2e7 // (dims * dims)))
    chunk_size = checks.count(chunk_size, "chunk_size", minimum=1)
    objective = _objective(saliency, targeted)
    increase = theta > 0

    def build():
        def run(x, y):
            n = tf.shape(x)[0]
            flat0 = tf.reshape(x, [n, dims])
            domain0 = flat0 < clip_max if increase else flat0 > clip_min
            not_diagonal = tf.logical_not(tf.eye(dims, dtype=tf.bool))

            def body(i, flat, domain, active):
                adv = tf.reshape(flat, tf.shape(x))
                (_, _), (alpha, beta), logits = gradients.value_and_grad(model, objective, adv, y, eot_samples)
                done = gradients.succeeded(logits, y, targeted)
                active = tf.logical_and(active, tf.logical_not(done))
                alpha, beta = tf.reshape(alpha, [n, dims]), tf.reshape(beta, [n, dims])
                a = alpha[:, :, None] + alpha[:, None, :]
                b = beta[:, :, None] + beta[:, None, :]
                ok = tf.logical_and(a > 0, b < 0) if increase else tf.logical_and(a < 0, b > 0)
                ok = tf.logical_and(ok, tf.logical_and(domain[:, :, None], domain[:, None, :]))
                ok = tf.logical_and(ok, not_diagonal)
                scores = tf.where(ok, -a * b, -np.inf)
                best = tf.argmax(tf.reshape(scores, [n, dims * dims]), -1, output_type=tf.int32)
                has_pair = tf.reduce_any(tf.reshape(ok, [n, -1]), -1)
                active = tf.logical_and(active, has_pair)
                chosen = tf.logical_and(tf.one_hot(best // dims, dims) + tf.one_hot(best % dims, dims) > 0, active[:, None])
                flat = tf.where(chosen, tf.clip_by_value(flat + theta, clip_min, clip_max), flat)
                domain = tf.logical_and(domain, tf.logical_not(chosen))
                return i + 1, flat, domain, active

            _, flat, _, _ = tf.while_loop(lambda i, f, d, active: tf.logical_and(i < max_iters, tf.reduce_any(active)),
                                          body, (tf.constant(0), flat0, domain0, tf.ones([n], tf.bool)))
            return tf.reshape(flat, tf.shape(x))

        return run

    run = gradients.compiled(model, ("jsma", objective.key, theta, dims, max_iters, eot_samples, clip_min, clip_max), build)

    out = [run(tf.constant(x[i:i + chunk_size]), tf.constant(y[i:i + chunk_size])).numpy()
           for i in range(0, len(x), chunk_size)]
    return np.concatenate(out)


def jsma_z(model, x, y, targeted=True, theta=1.0, gamma=1.0, eot_samples=1, chunk_size=None, clip_min=0.0, clip_max=1.0):
    """JSMA-Z: saliency from the logits Z (Papernot et al. 2016; Carlini & Wagner's naming)."""
    return jsma(model, x, y, targeted, "logits", theta, gamma, eot_samples, chunk_size, clip_min, clip_max)


def jsma_f(model, x, y, targeted=True, theta=1.0, gamma=1.0, eot_samples=1, chunk_size=None, clip_min=0.0, clip_max=1.0):
    """JSMA-F: saliency from the softmax outputs F (the original paper's formulation)."""
    return jsma(model, x, y, targeted, "softmax", theta, gamma, eot_samples, chunk_size, clip_min, clip_max)


PARAMETERS = {"theta": Parameter("float", "JSMA change per feature (sign: direction)"),
              "gamma": Parameter("float", "JSMA largest fraction of features changed")}
declare("jsma_z", jsma_z, norm="l0", summary="Jacobian saliency map attack on the logits", reference="Papernot et al. "
        "2016, Algorithms 2-3", parameters=PARAMETERS)
declare("jsma_f", jsma_f, norm="l0", summary="Jacobian saliency map attack on the softmax", reference="Papernot et al. "
        "2016, Algorithms 2-3", parameters=PARAMETERS)
