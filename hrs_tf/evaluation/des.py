"""Defense efficiency score and input-gradient statistics (HRS paper sections 3-4, Table 1, Figures 1-2).

- DES (section 4, eq. 3 with footnote 2): ``DES = delta_d / (delta_t + eta)``, ``eta = 0.002``, where
  ``delta_d`` is the gain in defense rate over the unprotected base model under the same attack and
  ``delta_t`` the test-accuracy drop relative to the base model. A defense is compared by the mean DES over
  its strength settings that fall in a chosen range (Table 2), and by the linear fit of defense-rate gain
  against accuracy drop over those settings (Figure 2).
- Input-gradient deviation (Table 1, Table A2 "Dev."): the standard deviation of the input gradient over
  repeated stochastic passes, averaged over input dimensions (and images); Figure 1 samples the gradient
  200 times at the first step of CW-PGD.
"""


import numpy as np

from hrs_tf.attacks import gradients
from hrs_tf.errors import ConfigError

ETA = 0.002


def des(defense_rate, accuracy, base_defense_rate, base_accuracy, eta=ETA):
    """Defense efficiency score of one defended model against one attack (section 4)."""
    gain = float(defense_rate) - float(base_defense_rate)
    drop = float(base_accuracy) - float(accuracy)
    return gain / (drop + float(eta))


def des_points(points, base, eta=ETA):
    """Adds ``accuracy_drop``, ``defense_gain`` and ``des`` to each point.

    ``points``: dicts with ``accuracy`` and ``defense_rate`` (one per strength setting of a defense, e.g.
    ``{"strength": "0.3", "accuracy": 0.9868, "defense_rate": 0.4}``); ``base``: the same for the
    unprotected model under the same attack.
    """
    out = []
    for p in points:
        q = dict(p)
        q["accuracy_drop"] = float(base["accuracy"]) - float(p["accuracy"])
        q["defense_gain"] = float(p["defense_rate"]) - float(base["defense_rate"])
        q["des"] = des(p["defense_rate"], p["accuracy"], base["defense_rate"], base["accuracy"], eta)
        out.append(q)
    return out


def _in_range(value, bounds):
    return bounds is None or (bounds[0] <= value <= bounds[1])


def mean_des(points, base, defense_rate_range=None, accuracy_drop_range=None, eta=ETA):
    """Mean / std of the DES of the settings whose defense rate and accuracy drop fall in the ranges.

    Returns ``{"mean", "std", "n", "points"}`` (``mean`` is None when no setting is in range).
    """
    scored = [p for p in des_points(points, base, eta)
              if _in_range(p["defense_rate"], defense_rate_range) and _in_range(p["accuracy_drop"], accuracy_drop_range)]
    values = np.array([p["des"] for p in scored], np.float64)
    return {"mean": float(values.mean()) if len(values) else None, "std": float(values.std()) if len(values) else None,
            "n": int(len(values)), "points": scored}


def linear_fit(xs, ys):
    """Least-squares line ``y = slope * x + intercept`` with its R^2 (Figure 2's solid lines)."""
    xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
    if len(xs) < 2 or np.ptp(xs) == 0:
        raise ConfigError(f"a linear fit needs at least two distinct x values, got {list(xs)}")
    slope, intercept = np.polyfit(xs, ys, 1)
    residual = ys - (slope * xs + intercept)
    total = ((ys - ys.mean()) ** 2).sum()
    r2 = 1.0 - (residual ** 2).sum() / total if total > 0 else 1.0
    return {"slope": float(slope), "intercept": float(intercept), "r2": float(r2)}


def gradient_samples(model, x, targets, samples=200, objective=None):
    """``samples`` input gradients of separate stochastic passes: array (samples, N, ...).

    Default objective: the targeted CW-PGD margin ``Z_t - max_{j != t} Z_j`` (the first CW-PGD step of
    Figure 1); each pass draws its own randomness (HRS path, dropout mask, noise).
    """
    if int(samples) < 2:
        raise ConfigError(f"samples={samples} must be at least 2 to measure a deviation")
    objective = objective or gradients.carlini_wagner(targeted=True, confidence=np.inf)
    return gradients.per_sample_gradients(model, objective, x, targets, int(samples))


def histogram_image(dataset):
    """The image and target of the gradient histograms: the first test image toward (label + 1) mod 10."""
    return dataset.x_test[:1], (dataset.y_test[:1] + 1) % 10


def steepest_pixels(model, x, target, count=3):
    """Flat input indices where ``model``'s gradient (default objective) on the one image ``x`` is largest."""
    grad = gradient_samples(model, x, target, samples=2)[0, 0].ravel()
    return [int(p) for p in np.argsort(-np.abs(grad), kind="stable")[:count]]


def gradients_at(model, x, target, pixels, samples=200):
    """``samples`` input gradients of the one image ``x`` at the flat input indices ``pixels``: (samples, pixels)."""
    grads = gradient_samples(model, x, target, samples)[:, 0]
    return grads.reshape(len(grads), -1)[:, list(pixels)]


def pixel_names(pixels, image_shape):
    """Labels ``pixel (row, col, channel)`` of flat input indices, for the histogram legends."""
    return [f"pixel {tuple(int(i) for i in np.unravel_index(p, tuple(image_shape)))}" for p in pixels]


def gradient_deviation(model, x, targets, samples=200, objective=None):
    """Mean over images and input dimensions of the std of the input gradient across passes (Table 1)."""
    grads = gradient_samples(model, x, targets, samples, objective)
    return float(grads.std(axis=0).mean())
