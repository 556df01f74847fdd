"""Checks, norms, projections and the Adam update shared by the attacks (any input rank).

Every attack works in pixel space ``[clip_min, clip_max]`` (default [0, 1], CleverHans's ``clip_min`` /
``clip_max``). Every user mistake raises :class:`hrs_tf.errors.ConfigError` / :class:`ModelError` with a
one-line message. The L-inf / L2 step and projection follow the definitions of Goodfellow et al. 2015 (FGM)
and Madry et al. 2018 (projection onto the eps-ball); the small-norm guards equal CleverHans 4.0.0's so that
our iterates match its ones on deterministic models (tested in ``tests/attacks/test_cleverhans.py``).

``model`` may be one Keras model or a list / tuple of models attacked at once (their objectives summed,
e.g. the multi-surrogate C&W of the Random Spiking paper); :func:`models_of` gives the list.
"""

import contextlib
import contextvars
import time

import numpy as np
import tensorflow as tf

from hrs_tf import checks
from hrs_tf.errors import ConfigError, ModelError

CLIP_MIN, CLIP_MAX = 0.0, 1.0
NORMS = (np.inf, 2)
_TINY = 1e-12  # guard against a zero norm (inside the square root, as CleverHans)
ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON = 0.9, 0.999, 1e-8  # TF1 / Keras defaults, as the reference attacks


# -- argument checks ------------------------------------------------------------------------------
def check_norm(norm):
    """``np.inf`` / ``"inf"`` / ``2`` -> ``np.inf`` or ``2``."""
    if isinstance(norm, str):
        key = norm.strip().lower()
        norm = {"inf": np.inf, "linf": np.inf, "l_inf": np.inf, "2": 2, "l2": 2}.get(key, norm)
    if norm == np.inf:
        return np.inf
    if norm == 2:
        return 2
    raise ConfigError(f"norm={norm!r} is not supported; use np.inf (L-inf) or 2 (L2)")


def check_eps(eps, norm):
    """An L-inf bound in [0, 1], or an L2 radius (any non-negative value)."""
    return checks.fraction(eps) if norm == np.inf else checks.nonnegative(eps, "eps")


def check_seed(seed):
    """A seed as a Python int; ``None`` draws one (the caller should record it)."""
    if seed is None:
        return int(np.random.default_rng().integers(0, 2**31 - 1))
    return checks.count(seed, "seed")


def check_box(clip_min, clip_max):
    """The pixel box ``(clip_min, clip_max)`` as floats with ``clip_min < clip_max``."""
    lo, hi = checks.number(clip_min, "clip_min"), checks.number(clip_max, "clip_max")
    if not lo < hi:
        raise ConfigError(f"clip_min={clip_min!r} must be below clip_max={clip_max!r}")
    return lo, hi


# -- models and inputs --------------------------------------------------------------------------------
def models_of(model):
    """The list of models an attack runs on: ``[model]``, or the models of a list / tuple (an ensemble)."""
    found = list(model) if isinstance(model, (list, tuple)) else [model]
    if not found:
        raise ConfigError("an attack needs at least one model")
    return found


def model_name(model):
    return "+".join(str(getattr(m, "name", "?")) for m in models_of(model))


def as_numpy(x):
    """Numpy view of a numpy array or tensor."""
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def model_input_shape(model):
    """The per-example input shape of a Keras model (None entries allowed), or None if unknown."""
    shape = getattr(model, "input_shape", None)
    if isinstance(shape, list):
        if len(shape) != 1:
            raise ModelError(f"model {getattr(model, 'name', model)!r} has {len(shape)} inputs; attacks need one image input")
        shape = shape[0]
    return None if shape is None else tuple(shape[1:])


def check_images(model, x, clip_min=CLIP_MIN, clip_max=CLIP_MAX):
    """``x`` as a float32 numpy array (N, ...) in ``[clip_min, clip_max]`` that fits every model's input shape."""
    x = as_numpy(x)
    if x.dtype.kind not in "fiu":
        raise ConfigError(f"images have dtype {x.dtype}; expected floats in [{clip_min:g}, {clip_max:g}]")
    x = np.asarray(x, np.float32)
    if x.ndim < 2 or len(x) == 0:
        raise ConfigError(f"images have shape {x.shape}; expected a non-empty batch (N, ...)")
    for m in models_of(model):
        expected = model_input_shape(m)
        if expected is not None and (len(expected) != x.ndim - 1 or
                                     any(e is not None and e != d for e, d in zip(expected, x.shape[1:]))):
            raise ModelError(f"model {getattr(m, 'name', '?')!r} takes inputs of shape {expected}, images have shape {x.shape[1:]}")
    if not np.all(np.isfinite(x)) or x.min() < clip_min - 1e-6 or x.max() > clip_max + 1e-6:
        raise ConfigError(f"image values span [{np.nanmin(x):g}, {np.nanmax(x):g}]; attacks expect pixels in "
                          f"[{clip_min:g}, {clip_max:g}]")
    return np.clip(x, clip_min, clip_max)


def check_labels(y, n, num_classes=None, name="y"):
    y = as_numpy(y)
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot
        y = np.argmax(y, axis=1)
    y = np.asarray(y).reshape(-1) if y.ndim <= 1 else y
    if y.ndim != 1 or len(y) != n or y.dtype.kind not in "iu":
        raise ConfigError(f"{name} must be {n} integer class labels, got {y.dtype} {y.shape}")
    if num_classes is not None and (y.min() < 0 or y.max() >= num_classes):
        raise ConfigError(f"{name} holds classes outside 0..{num_classes - 1}")
    return y.astype(np.int32)


def prepare(model, x, y, targeted, name, clip_min=CLIP_MIN, clip_max=CLIP_MAX):
    """Checked ``(x, y, num_classes)`` for attack ``name``: float32 images and int32 labels/targets.

    ``y`` is the target (``targeted=True``, required) or the true label; ``y=None`` in an untargeted attack
    uses the (first) model's own prediction (one forward pass), as CleverHans does to avoid label leaking.
    """
    clip_min, clip_max = check_box(clip_min, clip_max)
    x = check_images(model, x, clip_min, clip_max)
    classes = set()
    for m in models_of(model):
        logits = m(tf.constant(x[:1]), training=False)
        if len(logits.shape) != 2:
            raise ModelError(f"model {getattr(m, 'name', '?')!r} outputs shape {tuple(logits.shape)}; attacks need logits (N, classes)")
        classes.add(int(logits.shape[-1]))
    if len(classes) != 1:
        raise ModelError(f"the models {model_name(model)!r} output different numbers of classes {sorted(classes)}")
    num_classes = classes.pop()
    if y is None:
        if targeted:
            raise ConfigError(f"{name}: a targeted attack needs the targets y")
        first = models_of(model)[0]
        y = np.concatenate([np.argmax(as_numpy(first(tf.constant(x[i:i + 500]), training=False)), axis=1)
                            for i in range(0, len(x), 500)])
    y = check_labels(y, len(x), num_classes, "targets" if targeted else "labels")
    return x, y, num_classes


# -- norms and projections (graph code) ----------------------------------------------------------
def _axes(t):
    return list(range(1, len(t.shape)))


def l2_norm(t, keepdims=True):
    """Per-example L2 norm, guarded as CleverHans: ``sqrt(max(1e-12, sum t^2))``."""
    return tf.sqrt(tf.maximum(_TINY, tf.reduce_sum(tf.square(t), _axes(t), keepdims=keepdims)))


def steepest_step(grad, size, norm):
    """The step of length ``size`` maximising <step, grad> under ``norm`` (FGM, Goodfellow et al. 2015)."""
    if norm == np.inf:
        return size * tf.stop_gradient(tf.sign(grad))
    return size * grad / l2_norm(grad)


def project(eta, norm, eps):
    """Projects perturbations ``eta`` onto the ``norm`` ball of radius ``eps`` (clip, never rescale up)."""
    if norm == np.inf:
        return tf.clip_by_value(eta, -eps, eps)
    return eta * tf.minimum(1.0, eps / l2_norm(eta))


def random_start(shape, norm, radius, seed):
    """Uniform draw in the ``norm`` ball of ``radius`` (L2: Gaussian direction, radius * U^(1/d))."""
    seed = tf.constant([int(seed), 7], tf.int64)
    if norm == np.inf:
        return tf.random.stateless_uniform(shape, seed, -radius, radius)
    direction = tf.random.stateless_normal(shape, seed)
    direction = direction / l2_norm(direction)
    dims = float(np.prod(shape[1:]))
    u = tf.random.stateless_uniform([shape[0]] + [1] * (len(shape) - 1), seed + [0, 1])
    return radius * direction * tf.pow(u, 1.0 / dims)


def clip_pixels(x, clip_min=CLIP_MIN, clip_max=CLIP_MAX):
    return tf.clip_by_value(x, clip_min, clip_max)


def adam_update(m, v, g, t, learning_rate):
    """One bias-corrected Adam step (Kingma & Ba 2015, Algorithm 1, TF1 form): returns ``(step, m, v)`` for
    the gradient ``g`` of the loss being minimised at iteration ``t`` (1-based); the caller subtracts ``step``."""
    t = tf.cast(t, tf.float32)
    m = ADAM_BETA1 * m + (1.0 - ADAM_BETA1) * g
    v = ADAM_BETA2 * v + (1.0 - ADAM_BETA2) * tf.square(g)
    rate = learning_rate * tf.sqrt(1.0 - tf.pow(ADAM_BETA2, t)) / (1.0 - tf.pow(ADAM_BETA1, t))
    return rate * m / (tf.sqrt(v) + ADAM_EPSILON), m, v


_STEP_PROGRESS = contextvars.ContextVar("hrs_tf_attack_step_progress", default=None)


@contextlib.contextmanager
def step_progress(report):
    """Within the block, an attack with long inner steps (the C&W search on c: C&W-L2, EAD, ZOO) reports each step
    to ``report(line)`` (the harness prefixes the batch), so a long batch is not silent."""
    token = _STEP_PROGRESS.set(report)
    try:
        yield
    finally:
        _STEP_PROGRESS.reset(token)


def report_step(line):
    """Sends ``line`` to the :func:`step_progress` reporter of the current block, if any."""
    report = _STEP_PROGRESS.get()
    if report is not None:
        report(line)


class ConstantSearch:
    """Carlini & Wagner's per-example search on the constant c (2017, section V; C&W-L2, EAD, ZOO): iterate for
    the constants of each step, then :meth:`update` with which examples succeeded. x10 until a first success
    gives an upper bound, then bisection between the bounds; with 10 or more steps the last one uses the upper
    bound found (Carlini's ``repeat``)::

        search = ConstantSearch(initial_const, n, steps)
        for const in search:                  # numpy (n,)
            search.update(optimise(const))    # bool (n,): succeeded with this constant
    """

    NO_UPPER_BOUND = 1e10

    @staticmethod
    def check_settings(confidence, learning_rate, binary_search_steps, max_iterations, initial_const):
        """The checked settings every C&W-style attack takes: ``(kappa, learning_rate, binary_search_steps,
        max_iterations, initial_const)``; ConfigError (one line) naming the first bad one."""
        return (checks.nonnegative(confidence, "confidence"), checks.positive(learning_rate, "learning_rate"),
                checks.count(binary_search_steps, "binary_search_steps", minimum=1),
                checks.count(max_iterations, "max_iterations", minimum=1),
                checks.positive(initial_const, "initial_const"))

    def __init__(self, initial_const, n, steps):
        self.steps = steps
        self.lower = np.zeros(n)
        self.upper = np.full(n, self.NO_UPPER_BOUND)
        self.const = np.full(n, float(initial_const))
        self.done, self.started = 0, time.time()

    def __iter__(self):
        for step in range(self.steps):
            if self.steps >= 10 and step == self.steps - 1:
                self.const = np.where(self.upper < self.NO_UPPER_BOUND, self.upper, self.const)
            yield self.const

    def update(self, found):
        found = np.asarray(found, bool)
        self.upper = np.where(found, np.minimum(self.upper, self.const), self.upper)
        self.lower = np.where(found, self.lower, np.maximum(self.lower, self.const))
        bounded = self.upper < self.NO_UPPER_BOUND
        self.const = np.where(bounded, (self.lower + self.upper) / 2.0, self.const * 10.0)
        self.done += 1
        elapsed = time.time() - self.started
        left = self.steps - self.done
        report_step(f"search step {self.done}/{self.steps}: {int(bounded.sum())}/{len(found)} found so far, "
                    f"{elapsed:.0f} s" + (f", about {elapsed / self.done * left:.0f} s left in this batch" if left else ""))
