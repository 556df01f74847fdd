"""DeepFool (Moosavi-Dezfooli, Fawzi & Frossard 2016, "DeepFool: a simple and accurate method to fool deep
neural networks"): Algorithm 2 (multi-class, L2) and section 3.3 (general p; L-inf through the dual norm q = 1),
batched, with the robustness measure rho_adv of eq. 15 (:func:`robustness`).

Candidates: the class to leave ``k0`` and the ``nb_candidate - 1`` other classes with the largest logits on the
original image (``nb_candidate`` is capped at the number of classes). At each iteration, for every example
still classified ``k0``: ``f_k = Z_k - Z_k0`` and ``w_k = grad_x f_k`` at the current iterate over the
candidates ``k != k0``; then

- L2 (Algorithm 2): ``l = argmin_k |f_k| / ||w_k||_2``, ``r_i = (|f_l| + 1e-4) / ||w_l||_2^2 * w_l``;
- L-inf (section 3.3, eq. 11-12 with p = inf, q = 1): ``l = argmin_k |f_k| / ||w_k||_1``,
  ``r_i = (|f_l| + 1e-4) / ||w_l||_1 * sign(w_l)``;

``r_tot += r_i`` and the next iterate is ``clip(x0 + (1 + overshoot) * r_tot)``. An example stops as soon as its
prediction leaves ``k0``; the loop stops after ``max_iter`` steps or when every example has stopped, and the
last iterate is returned (also for an example that was not fooled in ``max_iter`` steps). On an affine
classifier one step lands on the nearest decision boundary (section 3.1; pinned by the tests).
Defaults: 10 candidates, overshoot 0.02, 50 iterations (the paper's eta = 0.02; CleverHans v3, REFERENCE
section 6). CleverHans 4 has no TF2 version of DeepFool (REFERENCE section 7), so it is written from the paper.

``k0``: the model's prediction when ``y`` is None (the paper's ``k(x0)``); with ``y`` given (untargeted), ``y``
is the class to leave, so a misclassified example is already adversarial and returned unchanged. Targeted
(ours; the paper has no targeted DeepFool): the only candidate is the target ``t``, with ``f = Z_t - max_{j != t}
Z_j`` (the C&W margin: the linearised step goes toward the boundary between ``t`` and the currently strongest
other class, the original prediction at the first step); an example stops when its prediction is ``t``;
``nb_candidate`` is then unused.

Deviations from the paper, and why: (1) the 1e-4 nudge is added to ``|f_l|`` (logit units, where CleverHans v3
adds 1e-5) rather than to the distance ``|f_l| / ||w_l||`` (the authors' code adds 1e-4 there): either keeps a
step from stopping exactly on the boundary; (2) the overshoot multiplies ``r_tot`` at every iterate (as in the
authors' code) and the iterate is clipped to ``[clip_min, clip_max]`` (the paper has no pixel box); (3) an
iterate's prediction is judged on the logits averaged over ``eot_samples`` passes, so that the attack works on
stochastic models (one forward pass, ``eot_samples`` with EOT, per step, as the authors' code judges each
iterate). In the [0, 1] box, clipping removes the outward part of each step, so more steps are needed: on 100 MNIST test
images, the small test model (``tests/attacks/helpers.py``) is fooled on all of them within 3 steps without the box
(clip range [-100, 100]) but needs up to 15 with it (97% within 10); the MNIST base model needs a median of 7 and at most 13
(``benchmarks/bench_deepfool.py``).
Every gradient goes through :func:`hrs_tf.attacks.gradients.value_and_grad` with an
objective of ``nb_candidate - 1`` outputs (one backward pass each), so EOT, fixed randomness and BPDA apply;
``model`` may be a list of models, attacked as the classifier whose logits are the sum of theirs (targeted:
``f`` = the sum of their margins).
DeepFool takes no ``loss_fn``: its step needs the per-class logits ``Z_k``, not a scalar loss (as JSMA).
Examples are processed ``CHUNK`` at a time (memory: the gradients of all candidates are held at once).
"""

import numpy as np
import tensorflow as tf

from hrs_tf import checks
from hrs_tf.attacks import common, gradients
from hrs_tf.attacks.registry import Parameter, declare
from hrs_tf.errors import ConfigError, ModelError

NUDGE = 1e-4  # added to |f_l| so that a step crosses the linearised boundary instead of stopping on it
CHUNK = 1000  # examples per graph call
_TINY = 1e-12


def _difference_objective(count):
    """``(Z_{c_1} - Z_{c_0}, ..., Z_{c_{count-1}} - Z_{c_0})`` per example, ``labels`` = candidates ``c`` (N, count)
    with ``c_0 = k0``."""
    def objective(logits, labels):
        z = tf.gather(logits, labels, batch_dims=1)
        return tuple(z[:, j] - z[:, 0] for j in range(1, count))

    objective.key = ("deepfool_differences", count)
    objective.num_outputs = count - 1
    return objective


def _target_objective(logits, labels):
    """``(Z_t - max_{j != t} Z_j,)`` with ``t = labels[:, 0]``."""
    return (gradients.margin(logits, labels[:, 0]),)


_target_objective.key = ("deepfool_target_margin",)
_target_objective.num_outputs = 1


def _mean_logits(model, x, samples):
    """Logits of the classifier (the sum over the models), averaged over ``samples`` separate forward passes."""
    models = common.models_of(model)

    def once():
        return tf.add_n([m(x, training=False) for m in models])

    if samples == 1:
        return once()
    _, total = tf.while_loop(lambda i, _: i < samples, lambda i, s: (i + 1, s + once()), (tf.constant(1), once()),
                             parallel_iterations=1)
    return total / samples


def step(f, w, norm):
    """DeepFool's step from the candidates' ``f`` (N, K) and flat ``w`` (N, K, D): the linearised step to the
    nearest boundary plus the nudge (Algorithm 2 for L2; eq. 11-12 with q = 1 for L-inf); returns (N, D)."""
    if norm == 2:
        sq = tf.maximum(tf.reduce_sum(tf.square(w), -1), _TINY)
        dual = tf.sqrt(sq)
    else:
        dual = tf.maximum(tf.reduce_sum(tf.abs(w), -1), _TINY)
    nearest = tf.argmin(tf.abs(f) / dual, axis=-1, output_type=tf.int32)
    f_l = tf.gather(f, nearest, batch_dims=1)
    w_l = tf.gather(w, nearest, batch_dims=1)
    size = (tf.abs(f_l) + NUDGE)[:, None]
    if norm == 2:
        return size / tf.gather(sq, nearest, batch_dims=1)[:, None] * w_l
    return size / tf.gather(dual, nearest, batch_dims=1)[:, None] * tf.sign(w_l)


def deepfool(model, x, y=None, targeted=False, norm=2, nb_candidate=10, overshoot=0.02, max_iter=50, eot_samples=1,
             clip_min=0.0, clip_max=1.0):
    """DeepFool, L2 (``norm=2``) or L-inf (``norm=np.inf``); ``y`` = the class to leave (None: the prediction)
    or, with ``targeted``, the target. Returns numpy images of ``x``'s shape."""
    norm = common.check_norm(norm)
    nb_candidate = checks.count(nb_candidate, "nb_candidate", minimum=2)
    overshoot = checks.nonnegative(overshoot, "overshoot")
    max_iter = checks.count(max_iter, "max_iter", minimum=1)
    eot_samples = checks.count(eot_samples, "eot_samples", minimum=1)
    from_prediction = y is None and not targeted
    x, y, num_classes = common.prepare(model, x, y, targeted, "deepfool", clip_min, clip_max)
    if num_classes < 2:
        raise ModelError(f"DeepFool needs at least 2 classes; the model outputs {num_classes}")
    count = 1 if targeted else min(nb_candidate, num_classes)
    objective = _target_objective if targeted else _difference_objective(count)
    dims = int(np.prod(x.shape[1:]))

    def build():
        def run(x, y, scale, max_iter):
            n = tf.shape(x)[0]
            logits = _mean_logits(model, x, eot_samples)
            if targeted:
                labels = y[:, None]
            else:
                k0 = tf.argmax(logits, -1, output_type=tf.int32) if from_prediction else y
                others = tf.where(tf.one_hot(k0, num_classes) > 0, -np.inf, logits)
                labels = tf.concat([k0[:, None], tf.math.top_k(others, count - 1).indices], axis=1)

            def unfooled(logits):
                pred = tf.argmax(logits, -1, output_type=tf.int32)
                return tf.not_equal(pred, y) if targeted else tf.equal(pred, labels[:, 0])

            def body(i, adv, r_tot, active):
                values, grads, _ = gradients.value_and_grad(model, objective, adv, labels, eot_samples)
                f = tf.stack(values, axis=1)
                w = tf.stack([tf.reshape(g, [n, dims]) for g in grads], axis=1)
                r = tf.where(active[:, None], step(f, w, norm), 0.0)
                r_tot = r_tot + tf.reshape(r, tf.shape(x))
                adv = common.clip_pixels(x + scale * r_tot, clip_min, clip_max)
                active = tf.logical_and(active, unfooled(_mean_logits(model, adv, eot_samples)))
                return i + 1, adv, r_tot, active

            _, adv, _, _ = tf.while_loop(
                lambda i, adv, r_tot, active: tf.logical_and(i < max_iter, tf.reduce_any(active)), body,
                (tf.constant(0), x, tf.zeros_like(x), unfooled(logits)), parallel_iterations=1)
            return adv

        return run

    # overshoot and max_iter are run-time inputs: one trace serves every value
    key = ("deepfool", objective.key, targeted, from_prediction, norm, num_classes, eot_samples, clip_min, clip_max)
    run = gradients.compiled(model, key, build)
    scale, max_iter = tf.constant(1.0 + overshoot, tf.float32), tf.constant(max_iter, tf.int32)
    out = [run(tf.constant(x[i:i + CHUNK]), tf.constant(y[i:i + CHUNK]), scale, max_iter).numpy()
           for i in range(0, len(x), CHUNK)]
    return np.concatenate(out)


def robustness(x, x_adv, norm=2):
    """rho_adv = mean over examples of ``||x_adv - x||_p / ||x||_p`` (DeepFool paper, eq. 15; ``p = 2`` by
    default, the hash paper's Table II "robustness" column; ``norm=np.inf`` for L-inf).

    The paper averages over the examples DeepFool perturbs (each test image with its DeepFool perturbation
    ``r(x)``): pass those, e.g. leave out examples DeepFool returned unchanged (misclassified ones when ``y`` is
    the true label), which would count as 0. Returns a Python float.
    """
    norm = common.check_norm(norm)
    x, x_adv = np.asarray(common.as_numpy(x), np.float64), np.asarray(common.as_numpy(x_adv), np.float64)
    if x.shape != x_adv.shape or x.ndim < 2 or len(x) == 0:
        raise ConfigError(f"robustness needs two batches of the same shape (N, ...); got {x.shape} and {x_adv.shape}")
    order = 2 if norm == 2 else np.inf
    size = np.linalg.norm(x.reshape(len(x), -1), ord=order, axis=1)
    if np.any(size == 0):
        raise ConfigError(f"robustness is undefined for an all-zero image (example {int(np.argmin(size))})")
    return float(np.mean(np.linalg.norm((x_adv - x).reshape(len(x), -1), ord=order, axis=1) / size))


PARAMETERS = {
    "nb_candidate": Parameter("int", "DeepFool: classes considered (the largest logits of the original image)", minimum=1),
    "overshoot": Parameter("float", "DeepFool: the perturbation is scaled by 1 + overshoot"),
    "max_iter": Parameter("int", "DeepFool: largest number of linearised steps", minimum=1),
}
declare("deepfool", deepfool, norm="l2", summary="DeepFool: iterated step to the nearest linearised boundary (L2)",
        reference="Moosavi-Dezfooli et al. 2016, Algorithm 2", parameters=PARAMETERS)
declare("deepfool_linf", deepfool, norm="linf", summary="DeepFool in the L-inf norm (dual norm q = 1)",
        reference="Moosavi-Dezfooli et al. 2016, section 3.3", parameters=PARAMETERS, defaults={"norm": np.inf})
