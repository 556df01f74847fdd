"""The hash paper's robustness estimator and input-gradient statistics (Wang et al., IEEE TNNLS 2021).

- ``g``: mean |dZ_j / dx_i| over the classes j, the input dimensions i and the images (section III-B, the
  adversarial-gradient term of the estimator);
- ``phi``: the variance of the logits, (1/m) sum_j (Z_j - mean Z)^2, averaged over the images (section III-B-1);
- ``R = alpha g' + (1 - alpha) phi'`` with g', phi' min-max normalised over a search (Algorithm 1, eq. 3), and
  R = 1 for a configuration whose accuracy drop is not below the threshold T.

:func:`gradient_magnitudes` gives, per image and input dimension, |dL/dx| (softmax cross-entropy at the label),
|dF_y/dx| (softmax probability of the label) and |dZ_y/dx| (logit of the label): Figure 2's three gradients.
"""

import numpy as np
import tensorflow as tf

from hrs_tf import checks
from hrs_tf.errors import ConfigError

# Figure 2's bins of a gradient's magnitude: [0, 1e-40], (1e-40, 1e-30], ..., (1e-1, 1], (1, inf).
HISTOGRAM_EDGES = (0.0, 1e-40, 1e-30, 1e-20, 1e-10, 1e-5, 1e-3, 1e-1, 1.0, np.inf)


def logit_statistics(model, x, batch_size=100):
    """``{"g", "phi", "images"}`` of ``model`` on images ``x`` (the estimator's two raw terms)."""
    x = np.asarray(x, np.float32)
    if len(x) == 0:
        raise ConfigError("the robustness estimator needs at least one image")
    batch_size = checks.count(batch_size, "batch_size", minimum=1)

    @tf.function(reduce_retracing=True)
    def batch_terms(images):
        with tf.GradientTape() as tape:
            tape.watch(images)
            logits = model(images, training=False)
        jacobian = tape.batch_jacobian(logits, images)  # (batch, classes, *input)
        g = tf.reduce_sum(tf.reduce_mean(tf.abs(tf.reshape(jacobian, [tf.shape(images)[0], -1])), axis=-1))
        phi = tf.reduce_sum(tf.math.reduce_variance(logits, axis=-1))
        return g, phi

    g_total, phi_total = 0.0, 0.0
    for i in range(0, len(x), batch_size):
        g, phi = batch_terms(tf.constant(x[i:i + batch_size]))
        g_total += float(g)
        phi_total += float(phi)
    return {"g": g_total / len(x), "phi": phi_total / len(x), "images": int(len(x))}


def min_max(values):
    """``values`` scaled to [0, 1] by the finite ones (all equal: zeros); a non-finite value stays NaN."""
    values = np.asarray(values, np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.full_like(values, np.nan)
    spread = finite.max() - finite.min()
    scaled = np.zeros_like(values) if spread == 0 else (values - finite.min()) / spread
    return np.where(np.isfinite(values), scaled, np.nan)


def robustness_scores(g, phi, accuracies, reference_accuracy, alpha=0.5, threshold=0.01):
    """Algorithm 1's R for every configuration: alpha g' + (1 - alpha) phi' (g', phi' min-max normalised over all
    configurations with finite terms), or 1 where ``reference_accuracy - accuracy >= threshold`` or the terms are
    not finite (a diverged retraining). Smaller is more robust."""
    alpha = checks.fraction(alpha, "alpha")
    threshold = checks.nonnegative(threshold, "threshold")
    if not (len(g) == len(phi) == len(accuracies)) or len(g) == 0:
        raise ConfigError("robustness_scores needs g, phi and accuracies of the same, non-zero length")
    scores = alpha * min_max(g) + (1 - alpha) * min_max(phi)
    degraded = reference_accuracy - np.asarray(accuracies, np.float64) >= threshold
    # a configuration whose training diverged (non-finite logits) is rejected like a degraded one
    return np.where(degraded | ~np.isfinite(scores), 1.0, scores)


def gradient_magnitudes(model, x, y, batch_size=100):
    """``{"loss", "probability", "logit"}``: |dL/dx|, |dF_y/dx| and |dZ_y/dx| of every input dimension of every
    image, float64 arrays of shape (N, dims) (Figure 2). Computed in float32 like the model; values below float32's
    smallest subnormal are exactly 0, as in the paper's first bin."""
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.int32)

    @tf.function(reduce_retracing=True)
    def batch_gradients(images, labels):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(images)
            logits = model(images, training=False)
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            picked = tf.stack([tf.range(tf.shape(labels)[0]), labels], axis=1)
            probability = tf.gather_nd(tf.nn.softmax(logits), picked)
            logit = tf.gather_nd(logits, picked)
        grads = [tape.gradient(v, images) for v in (loss, probability, logit)]
        del tape
        return [tf.reshape(tf.abs(g), [tf.shape(images)[0], -1]) for g in grads]

    parts = {"loss": [], "probability": [], "logit": []}
    for i in range(0, len(x), batch_size):
        for key, value in zip(parts, batch_gradients(tf.constant(x[i:i + batch_size]), tf.constant(y[i:i + batch_size]))):
            parts[key].append(np.asarray(value, np.float64))
    return {key: np.concatenate(values) for key, values in parts.items()}


def histogram(values, edges=HISTOGRAM_EDGES):
    """Fractions of ``values`` in Figure 2's bins (first bin closed at both ends, the others right-closed)."""
    values = np.asarray(values, np.float64).ravel()
    counts = [np.count_nonzero(values <= edges[1])]
    counts += [np.count_nonzero((values > lo) & (values <= hi)) for lo, hi in zip(edges[1:-1], edges[2:])]
    return (np.asarray(counts, np.float64) / max(len(values), 1)).tolist()
