"""Stability study (Random Spiking paper section 5.3, Figures 1-2): the perturbations, the measure (rejections count as
changed), resumable cells, reproducible stochastic cells, the results files and the figure."""

import csv
import os

import keras
import numpy as np
import pytest

import randspike.experiments.stability as st
from hrs_tf.errors import ConfigError
from hrs_tf.reporting import plots
from hrs_tf.layers.defensive_dropout import DefensiveDropout
from randspike import decision
from randspike.decision import REJECTED
from tests.randspike.helpers import linear_mnist_model

LEVELS, QUALITIES = (0.0, 4.0), (10, 100)


@pytest.fixture(scope="module")
def mnist_small(real_mnist):
    return real_mnist.x_test[:30], real_mnist.y_test[:30]


@pytest.fixture(scope="module")
def linear_model(real_mnist):
    model = linear_mnist_model(real_mnist, epochs=2)
    return model


def test_gaussian_exact_l2_before_clipping_and_clipped_range(mnist_small):
    x, _ = mnist_small
    rng = np.random.default_rng(0)
    noise = st.gaussian_noise_at_l2(x.shape, 1.7, rng)
    assert np.allclose(np.sqrt((noise ** 2).reshape(len(x), -1).sum(1)), 1.7, atol=1e-4)
    noisy = st.gaussian_at_l2(x, 1.7, np.random.default_rng(0))
    assert noisy.dtype == np.float32 and noisy.min() >= 0.0 and noisy.max() <= 1.0
    realised = np.sqrt(((noisy - x) ** 2).reshape(len(x), -1).sum(1))
    assert np.all(realised <= 1.7 + 1e-4) and realised.mean() < 1.5  # clipping on the black background lowers it
    # no clipping on a mid-grey image (per-pixel std 0.5/28 << 0.5): the realised norm is the exact one
    grey = np.full((4, 28, 28, 1), 0.5, np.float32)
    realised = np.sqrt(((st.gaussian_at_l2(grey, 0.5, rng) - grey) ** 2).reshape(4, -1).sum(1))
    assert np.allclose(realised, 0.5, atol=1e-4)
    assert np.array_equal(st.gaussian_at_l2(x, 0.0, rng), x)


def test_jpeg_round_trip_grayscale_and_rgb(mnist_small):
    x, _ = mnist_small
    best = st.jpeg_round_trip(x, 100)
    assert best.shape == x.shape and best.dtype == np.float32
    # quality 100 (accurate IDCT): measured max 2/255 on MNIST; tolerance 3/255 max, 0.5/255 mean
    assert np.abs(best - x).max() <= 3 / 255 + 1e-6 and np.abs(best - x).mean() <= 0.5 / 255
    worst = st.jpeg_round_trip(x, 10)
    assert np.abs(worst - x).mean() > 3 / 255  # measured ~8/255
    assert np.array_equal(st.jpeg_round_trip(x[..., 0], 10), worst[..., 0])  # (N, H, W) accepted
    g = np.linspace(0.1, 0.9, 32, dtype=np.float32)
    rgb = np.stack([np.outer(g, g), np.outer(g, 1 - g), np.outer(1 - g, g)], -1)[None].repeat(2, 0)
    # smooth RGB at quality 100 with 4:2:0 chroma subsampling: measured max 6.5/255; tolerance 8/255
    assert np.abs(st.jpeg_round_trip(rgb, 100) - rgb).max() <= 8 / 255
    assert np.abs(st.jpeg_round_trip(rgb, 10) - rgb).max() > 20 / 255  # measured 36/255
    for bad in (0, 101, 2.5):
        with pytest.raises(ConfigError, match="quality"):
            st.jpeg_round_trip(x, bad)


def test_deterministic_model_level_zero_unchanged(linear_model, mnist_small):
    x, _ = mnist_small

    def decide(images):
        return decision.labels(linear_model, images, rule=decision.SINGLE)

    at_zero = st.unchanged_fraction(decide, x, lambda im, rng: st.gaussian_at_l2(im, 0.0, rng), draws=3)
    assert at_zero["unchanged"] == 100.0 and at_zero["per_draw"] == [100.0] * 3 and at_zero["realised_l2"] == 0.0
    strong = st.unchanged_fraction(decide, x, lambda im, rng: st.gaussian_at_l2(im, 8.0, rng), draws=3)
    assert strong["unchanged"] < 95.0 and strong["realised_l2"] > 4.0  # the measure does move


def test_rejections_count_as_changed():
    x = np.zeros((10, 4, 4, 1), np.float32)
    x[9, 0, 0, 0] = 1.0  # the clean image 9 is rejected

    def decide(images):  # reject an image whose first pixel is bright, else label 3
        return np.where(images[:, 0, 0, 0] > 0.5, REJECTED, 3)

    def perturb(images, rng):
        out = images.copy()
        out[:4, 0, 0, 0] = 1.0  # 4 perturbed images rejected
        return out

    result = st.unchanged_fraction(decide, x, perturb, draws=2)
    # images 4..8 unchanged (5 of 10); 0..3 rejected; 9 rejected both clean and perturbed: changed too
    assert result["unchanged"] == 50.0 and result["rejected"] == 50.0 and result["clean_rejected"] == 10.0


def _run(model, x, work, **kwargs):
    settings = dict(gaussian_levels=LEVELS, jpeg_qualities=QUALITIES, draws=2, num_images=20, dataset="mnist")
    settings.update(kwargs)
    return st.run(model, x, str(work), **settings)


def test_run_resumes_and_writes_results(linear_model, mnist_small, tmp_path, monkeypatch):
    x, _ = mnist_small
    lines = []
    models = {"lin-a": linear_model, "lin-b": lambda: linear_model}
    results = _run(models, x, tmp_path, schemes={"lin-a": "Linear", "lin-b": "Linear"}, log=lines.append)
    computed = [s for s in lines if s.startswith("[stability]")]
    assert len(computed) == 2 * (1 + len(LEVELS) + len(QUALITIES))  # clean + 4 cells per model
    rows = {(r["model"], r["perturbation"], r["level"]): r for r in results["rows"]}
    assert rows[("lin-a", "gaussian", 0.0)]["unchanged"] == 100.0  # deterministic model, level 0
    assert rows[("lin-a", "gaussian", 4.0)]["unchanged"] < 100.0
    assert rows[("lin-a", "jpeg", 10)]["rule"] == decision.SINGLE  # deterministic model: single prediction
    curve = [c for c in results["curves"] if c["perturbation"] == "gaussian" and c["level"] == 4.0]
    assert len(curve) == 1 and curve[0]["models"] == 2 and curve[0]["std"] == 0.0  # the same model twice
    with open(tmp_path / "stability.csv") as f:
        assert len(list(csv.DictReader(f))) == 8
    with open(tmp_path / "stability.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # resume: nothing recomputed, and a deleted cell is the only one redone
    lines.clear()
    os.unlink(tmp_path / "cells" / "stability" / "lin-b_jpeg_q=10.json")
    again = _run(models, x, tmp_path, schemes={"lin-a": "Linear", "lin-b": "Linear"}, log=lines.append)
    assert [s for s in lines if s.startswith("[stability]")] == ["[stability] lin-b|jpeg|q=10"]
    assert again["rows"] == results["rows"]
    with pytest.raises(ConfigError, match="other settings.*draws"):
        _run(models, x, tmp_path, draws=3, log=lambda s: None)


def test_stochastic_cell_reproducible_after_resume(mnist_small, tmp_path):
    x, _ = mnist_small
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), DefensiveDropout(0.5),
                              keras.layers.Dense(10)])
    work = tmp_path / "s"
    first = _run({"drop": model}, x, work, jpeg_qualities=(50,), perturbations=("jpeg",), passes=2, figure=False,
                 log=lambda s: None)
    os.unlink(work / "cells" / "stability" / "drop_jpeg_q=50.json")
    second = _run({"drop": model}, x, work, jpeg_qualities=(50,), perturbations=("jpeg",), passes=2, figure=False,
                  log=lambda s: None)
    assert first["rows"][0]["rule"] == decision.MC_AVERAGE
    assert first["rows"][0]["unchanged"] == second["rows"][0]["unchanged"]
    # an untrained model under dropout 0.5 changes some predictions between two seeded decisions
    assert first["rows"][0]["unchanged"] < 100.0


def test_curves_mean_and_std_and_bad_input(tmp_path):
    rows = [{"scheme": "A", "perturbation": "jpeg", "level": 10, "unchanged": u} for u in (90.0, 100.0)]
    (curve,) = st.curves(rows)
    assert curve["mean"] == 95.0 and abs(curve["std"] - np.sqrt(50.0)) < 1e-9  # sample std (ddof 1)
    st.plot({"curves": [curve]}, str(tmp_path / "one.png"))
    assert (tmp_path / "one.png").stat().st_size > 1000
    x = np.zeros((5, 28, 28, 1), np.float32)
    for kwargs, message in [({"gaussian_levels": None, "dataset": "svhn"}, "dataset"),
                            ({"jpeg_qualities": (0, 10)}, "JPEG quality"), ({"draws": 0}, "draws"),
                            ({"num_images": 6}, "num_images"), ({"perturbations": ("blur",)}, "perturbation")]:
        with pytest.raises(ConfigError, match=message):
            _run({"m": keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])},
                 x, tmp_path / "bad", **kwargs)
        assert not (tmp_path / "bad").exists()


def test_stability_figure_tells_schemes_apart_without_colour_and_puts_the_legend_beside(monkeypatch, tmp_path):
    figures = []
    monkeypatch.setattr(plots, "save_png", lambda fig, path: figures.append(fig))
    curves = [{"scheme": scheme, "perturbation": perturbation, "level": level, "mean": 99.0, "std": 0.5}
              for scheme in ("A", "B", "C") for perturbation, level in (("gaussian", 0.0), ("gaussian", 1.0),
                                                                       ("jpeg", 100), ("jpeg", 50))]
    st.plot({"curves": curves}, str(tmp_path / "stability.png"))
    (fig,) = figures
    lines = fig.axes[0].get_lines()
    assert len(lines) == 3 and len({(line.get_marker(), line.get_linestyle()) for line in lines}) == 3
    fig.canvas.draw()
    legend, right_panel = fig.legends[0].get_window_extent(), fig.axes[-1].get_window_extent()
    assert legend.x0 >= right_panel.x1 and legend.y1 > right_panel.y0 and legend.y0 < right_panel.y1
    assert min(text.get_fontsize() for text in fig.legends[0].get_texts()) >= 9
    # the +- std band of every scheme, and JPEG quality falling to the right as in the paper
    assert all(len(ax.collections) == 3 for ax in fig.axes[:2])
    assert not fig.axes[0].xaxis_inverted() and fig.axes[1].xaxis_inverted()
