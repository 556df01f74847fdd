"""Checks, norms and projections shared by the attacks (pixel space [0, 1], any input rank).

Every user mistake raises :class:`hrs_tf.errors.ConfigError` / :class:`ModelError` with a one-line message.
The L-inf / L2 step and projection follow the definitions of Goodfellow et al. 2015 (FGM) and Madry et al.
2018 (projection onto the eps-ball); the small-norm guards equal CleverHans 4.0.0's so that our iterates
match its ones on deterministic models (tested in ``tests/test_attacks_cleverhans.py``).
"""

import numbers

import numpy as np
import tensorflow as tf

from hrs_tf.errors import ConfigError, ModelError

CLIP_MIN, CLIP_MAX = 0.0, 1.0
NORMS = (np.inf, 2)
_TINY = 1e-12  # guard against a zero norm (inside the square root, as CleverHans)


# -- argument checks ------------------------------------------------------------------------------
def check_fraction(value, name="eps", allow_zero=True):
    """A float in [0, 1] (pixel units); ConfigError otherwise."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r} is not a number") from None
    if not np.isfinite(v) or v < 0.0 or v > 1.0 or (v == 0.0 and not allow_zero):
        bound = "[0, 1]" if allow_zero else "(0, 1]"
        raise ConfigError(f"{name}={value!r} is outside {bound} (pixels are scaled to [0, 1]; write 8/255, not 8)")
    return v


def check_positive(value, name):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r} is not a number") from None
    if not (np.isfinite(v) and v > 0):
        raise ConfigError(f"{name}={value!r} must be a positive number")
    return v


def check_nonnegative(value, name):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r} is not a number") from None
    if not (np.isfinite(v) and v >= 0):
        raise ConfigError(f"{name}={value!r} must be a non-negative number")
    return v


def check_count(value, name, minimum=0):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if not (isinstance(value, float) and value.is_integer()):
            raise ConfigError(f"{name}={value!r} is not an integer")
    v = int(value)
    if v < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return v


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


def check_seed(seed):
    """A seed as a Python int; ``None`` draws one (the caller should record it)."""
    if seed is None:
        return int(np.random.default_rng().integers(0, 2**31 - 1))
    return check_count(seed, "seed")


# -- inputs -----------------------------------------------------------------------------------------
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


def check_images(model, x):
    """``x`` as a float32 numpy array (N, ...) in [0, 1] that fits the model's input shape."""
    x = as_numpy(x)
    if x.dtype.kind not in "fiu":
        raise ConfigError(f"images have dtype {x.dtype}; expected floats in [0, 1]")
    x = np.asarray(x, np.float32)
    if x.ndim < 2 or len(x) == 0:
        raise ConfigError(f"images have shape {x.shape}; expected a non-empty batch (N, ...)")
    expected = model_input_shape(model)
    if expected is not None and (len(expected) != x.ndim - 1 or any(e is not None and e != d for e, d in zip(expected, x.shape[1:]))):
        raise ModelError(f"model {getattr(model, 'name', '?')!r} takes inputs of shape {expected}, images have shape {x.shape[1:]}")
    if not np.all(np.isfinite(x)) or x.min() < CLIP_MIN - 1e-6 or x.max() > CLIP_MAX + 1e-6:
        raise ConfigError(f"image values span [{np.nanmin(x):g}, {np.nanmax(x):g}]; attacks expect pixels in [0, 1]")
    return np.clip(x, CLIP_MIN, CLIP_MAX)


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


def prepare(model, x, y, targeted, name):
    """Checked ``(x, y)`` for attack ``name``: float32 images and int32 labels/targets.

    ``y`` is the target (``targeted=True``, required) or the true label; ``y=None`` in an untargeted attack
    uses the model's own prediction (one forward pass), as CleverHans does to avoid label leaking.
    """
    x = check_images(model, x)
    logits = model(tf.constant(x[:1]), training=False)
    if len(logits.shape) != 2:
        raise ModelError(f"model {getattr(model, 'name', '?')!r} outputs shape {tuple(logits.shape)}; attacks need logits (N, classes)")
    num_classes = int(logits.shape[-1])
    if y is None:
        if targeted:
            raise ConfigError(f"{name}: a targeted attack needs the targets y")
        y = np.concatenate([np.argmax(as_numpy(model(tf.constant(x[i:i + 500]), training=False)), axis=1)
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


def clip_pixels(x):
    return tf.clip_by_value(x, CLIP_MIN, CLIP_MAX)
