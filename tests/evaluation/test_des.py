import keras
import numpy as np
import pytest

from hrs_tf import models
from hrs_tf.evaluation import des
from hrs_tf.defenses import hrs
from hrs_tf.layers import stochastic
from hrs_tf.errors import ConfigError
from hrs_tf.reporting import plots


def test_des_formula_with_eta():
    # 50 points of defense-rate gain for a 1 point accuracy drop: 0.5 / (0.01 + 0.002).
    assert des.des(0.5, 0.98, 0.0, 0.99) == pytest.approx(0.5 / 0.012)
    # No accuracy drop: eta keeps the score finite (footnote 2).
    assert des.des(0.2, 0.99, 0.1, 0.99) == pytest.approx(0.1 / 0.002)


def test_mean_des_over_a_range_and_linear_fit():
    base = {"accuracy": 0.99, "defense_rate": 0.1}
    points = [{"strength": s, "accuracy": 0.99 - d, "defense_rate": 0.1 + 20 * d}
              for s, d in [("a", 0.002), ("b", 0.004), ("c", 0.008), ("d", 0.02)]]
    everything = des.mean_des(points, base)
    assert everything["n"] == 4
    expected = [20 * d / (d + 0.002) for d in (0.002, 0.004, 0.008, 0.02)]
    assert everything["mean"] == pytest.approx(np.mean(expected))
    in_range = des.mean_des(points, base, defense_rate_range=(0.0, 0.3))
    assert in_range["n"] == 3 and in_range["mean"] == pytest.approx(np.mean(expected[:3]))
    assert des.mean_des(points, base, accuracy_drop_range=(0.5, 1.0))["mean"] is None
    fit = des.linear_fit([p["accuracy_drop"] for p in in_range["points"]], [p["defense_gain"] for p in in_range["points"]])
    assert fit["slope"] == pytest.approx(20.0) and fit["intercept"] == pytest.approx(0.0, abs=1e-12)
    assert fit["r2"] == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="two distinct x values"):
        des.linear_fit([0.1], [0.2])


@pytest.fixture(scope="module")
def hrs_model():
    keras.utils.set_random_seed(3)
    return hrs.build_hrs_model("mnist", (3, 3), seed=5)


def test_gradient_deviation_is_zero_for_a_fixed_model_and_positive_for_hrs(hrs_model):
    x = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    targets = np.array([1, 2, 3, 4])
    base = models.build_base_model("mnist")
    # Deterministic models: repeated passes differ only by float rounding between executions (~1e-11 seen).
    assert des.gradient_deviation(base, x, targets, samples=5) < 1e-9
    with stochastic.randomness(hrs_model, stochastic.OFF):
        assert des.gradient_deviation(hrs_model, x, targets, samples=5) < 1e-9
    samples = des.gradient_samples(hrs_model, x, targets, samples=40)
    assert samples.shape == (40, 4, 28, 28, 1)
    # Every sample is the gradient of one of the 9 paths (batch granularity: one path per pass).
    path_grads = []
    for path in np.ndindex(3, 3):
        with stochastic.pinned(hrs_model, path):
            path_grads.append(des.gradient_samples(hrs_model, x, targets, samples=2)[0])
    for s in samples:
        assert min(np.abs(s - g).max() for g in path_grads) < 1e-6
    distinct = {int(np.argmin([np.abs(s - g).max() for g in path_grads])) for s in samples}
    assert len(distinct) >= 5  # 40 draws over 9 equally likely paths; P(< 5 distinct) is negligible
    assert des.gradient_deviation(hrs_model, x, targets, samples=40) == pytest.approx(float(samples.std(axis=0).mean()), rel=0.5)
    with pytest.raises(ConfigError, match="samples=1"):
        des.gradient_deviation(hrs_model, x, targets, samples=1)


def test_plots_are_written(tmp_path, hrs_model):
    x = np.random.default_rng(1).random((1, 28, 28, 1), dtype=np.float32)
    grads = des.gradient_samples(hrs_model, x, np.array([3]), samples=10)[:, 0]
    plots.plot_gradient_histograms(tmp_path / "hist.png", {"HRS": grads, "HRS again": grads})
    base = {"accuracy": 0.99, "defense_rate": 0.1}
    points = des.des_points([{"accuracy": 0.98, "defense_rate": 0.3}, {"accuracy": 0.97, "defense_rate": 0.5}], base)
    plots.plot_des(tmp_path / "des.png", {"dropout": points, "single": points[:1]}, "PGD")
    for name in ("hist.png", "des.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
