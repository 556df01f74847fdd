"""ZOO-ADAM: the coordinate finite differences are the gradient of the log-probability objective, every step
is one batched model call of 2B + 1 images per running example and the query count is exact and within the
budget, the attack succeeds on a small trained MNIST model, a reduced attack space gives perturbations in the
span of the bilinear upsampling, and bad settings fail with one line before any query."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from hrs_tf.attacks import registry
from hrs_tf.attacks.zoo import coordinate_gradient, log_prob_loss, zoo
from hrs_tf.errors import ConfigError


def smooth_model(dtype, seed=0, shape=(6, 6, 1), hidden=8, classes=5):
    """A small smooth classifier (tanh hidden layer, logits) as a plain callable of the given dtype."""
    rng = np.random.default_rng(seed)
    d = int(np.prod(shape))
    w1 = tf.constant(rng.normal(0, 1.5, (d, hidden)), dtype)
    w2 = tf.constant(rng.normal(0, 1.0, (hidden, classes)), dtype)

    def model(x, training=False):
        return tf.matmul(tf.tanh(tf.matmul(tf.reshape(x, [-1, d]), w1)), w2)

    return model


class Counting:
    """Wraps a model and records the batch size of every call that reaches it (eager or inside a graph)."""

    def __init__(self, model):
        self.model, self.sizes = model, []
        self.input_shape = getattr(model, "input_shape", None)

    def _record(self, n):
        self.sizes.append(int(n))
        return 0

    def __call__(self, x, training=False):
        tf.py_function(self._record, [tf.shape(x)[0]], [tf.int32])
        return self.model(x, training=training)


@pytest.fixture(scope="module")
def softmax_mnist(real_mnist):
    """Softmax regression on the first 8000 real MNIST training images (about 88% test accuracy, ~2 s)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(real_mnist.x_train[:8000], real_mnist.y_train[:8000], epochs=2, batch_size=128, verbose=0)
    return model


def objective(model, x, y, const, targeted, batch):
    """The full ZOO objective ``||image - x||^2 + c f(image)`` of the probe images of :func:`coordinate_gradient`."""
    xr = tf.repeat(x, 2 * batch, axis=0)
    yr = tf.repeat(y, 2 * batch)
    return lambda images: (tf.cast(tf.reduce_sum(tf.square(images - xr), [1, 2, 3]), tf.float64)
                           + const * log_prob_loss(model(images), yr, targeted))


@pytest.mark.parametrize("targeted", [False, True])
def test_finite_differences_are_the_gradient_of_the_log_prob_objective(targeted):
    rng = np.random.default_rng(1)
    batch, const = 8, 3.0
    x64 = rng.uniform(0.2, 0.8, (3, 6, 6, 1))
    coords = np.stack([rng.permutation(36)[:batch] for _ in range(3)]).astype(np.int32)
    for dtype, rtol, atol in ((tf.float64, 1e-6, 1e-9), (tf.float32, 0.0, 3e-2)):
        model = smooth_model(dtype)
        x = tf.constant(x64, dtype)
        labels = np.argmax(model(x).numpy(), axis=1)
        y = tf.constant((labels + 1) % 5 if targeted else labels, tf.int32)
        # Start off the box centre so that the L2 term has a gradient too.
        x0 = tf.constant(x64 + rng.normal(0, 0.05, x64.shape), dtype)
        estimate = coordinate_gradient(objective(model, x, y, const, targeted, batch), x0, coords).numpy()
        with tf.GradientTape() as tape:
            tape.watch(x0)
            l2 = tf.cast(tf.reduce_sum(tf.square(x0 - x), [1, 2, 3]), tf.float64)
            value = l2 + const * log_prob_loss(model(x0), y, targeted)
        true = tape.gradient(value, x0).numpy().reshape(3, -1)
        true = np.take_along_axis(true, coords, axis=1)
        assert np.abs(true).max() > 0.1  # a non-trivial gradient
        # float64: truncation O(h^2); measured max relative error 3e-7, bound 1e-6. float32 (the precision of
        # the attack): the logits' rounding (~1e-6 of the loss) over 2h = 2e-4; measured max absolute error
        # 1.25e-2 on gradients up to 1.1, bound 3e-2.
        np.testing.assert_allclose(estimate, true, rtol=rtol, atol=atol)
        # The estimate is not the gradient at other coordinates (the test can fail).
        assert not np.allclose(estimate, np.roll(true, 1, axis=1), rtol=rtol, atol=atol)


def test_one_batched_call_per_step_and_exact_query_count():
    model = Counting(smooth_model(tf.float32))
    x = np.random.default_rng(2).uniform(0, 1, (3, 6, 6, 1)).astype(np.float32)
    y = np.array([0, 1, 2])
    batch = 4
    cost = 2 * batch + 1
    stats = {}
    zoo(model, x, y, batch_coordinates=batch, max_queries=99, max_iterations=50, binary_search_steps=3,
        abort_early=False, seed=0, stats=stats)
    # Example 0 also paid the 1-image shape check: 1 + 10 * 9 = 91 <= 99 < 100, the others 11 * 9 = 99.
    assert model.sizes == [1] + [3 * cost] * 10 + [2 * cost]
    assert stats["queries"].dtype == np.int64 and stats["queries"].tolist() == [91, 99, 99]
    assert sum(model.sizes) == stats["queries"].sum()

    # y=None: the label prediction is one more query per example. query_batch_size=10 splits a step's call
    # into pieces of whole examples (10 rounded down to 9 = 2B + 1).
    model.sizes.clear()
    stats = {}
    zoo(model, x, None, batch_coordinates=batch, max_queries=50, abort_early=False, query_batch_size=10,
        seed=0, stats=stats)
    assert model.sizes[:2] == [1, 3] and model.sizes[2:] == [cost] * 15
    assert stats["queries"].tolist() == [47, 46, 46]  # 2 + 5 * 9, 1 + 5 * 9
    assert sum(model.sizes) == stats["queries"].sum() and stats["queries"].max() <= 50


def test_untargeted_success_on_small_trained_mnist_model(real_mnist, softmax_mnist):
    x, y = real_mnist.x_test[:5], real_mnist.y_test[:5]
    assert (np.argmax(softmax_mnist.predict(x, verbose=0), 1) == y).all()
    stats = {}
    adv = zoo(softmax_mnist, x, y, max_queries=20000, seed=0, stats=stats)  # paper's B, h, eta; default c
    pred = np.argmax(softmax_mnist.predict(adv, verbose=0), 1)
    l2 = np.sqrt(((adv - x) ** 2).reshape(5, -1).sum(1))
    # Measured: first successes after 5,654 to 12,080 queries; after 20,000, L2 0.86 to 1.71 (mean 1.30).
    assert (pred != y).all()
    assert l2.max() < 2.5
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    assert (stats["queries"] <= 20000).all()


def upsampling_matrix(r, size):
    """Columns = the bilinear upsampling (tf.image.resize) of each unit vector of an r x r grid."""
    eye = np.eye(r * r, dtype=np.float32).reshape(r * r, r, r, 1)
    return tf.image.resize(eye, [size, size], method="bilinear").numpy().reshape(r * r, -1).T


def span_residual(delta, basis):
    """Relative L2 residual of the least-squares fit of each perturbation by the columns of ``basis``."""
    flat = delta.reshape(len(delta), -1).astype(np.float64).T
    coef, *_ = np.linalg.lstsq(basis, flat, rcond=None)
    return np.linalg.norm(flat - basis @ coef, axis=0) / np.linalg.norm(flat, axis=0)


def test_reduced_space_perturbation_is_an_upsampled_grid(softmax_mnist):
    x = np.random.default_rng(3).uniform(0.4, 0.6, (2, 28, 28, 1)).astype(np.float32)  # interior: no clipping
    basis = upsampling_matrix(7, 28)
    settings = dict(batch_coordinates=16, max_queries=33 * 100, abort_early=False, binary_search_steps=1, seed=0)
    reduced = zoo(softmax_mnist, x, reduced_size=7, **settings) - x
    full = zoo(softmax_mnist, x, reduced_size=None, **settings) - x
    # Both attacks found an adversarial example (else x itself is returned), with a perturbation small enough
    # that the box [0, 1] never clipped it.
    assert (np.abs(reduced).max(axis=(1, 2, 3)) > 0.005).all() and (np.abs(full).max(axis=(1, 2, 3)) > 0.005).all()
    assert np.abs(reduced).max() < 0.4
    # Measured residuals: 7e-7 and 2e-6 (float32 rounding of x + delta) vs 0.89 and 0.93 for the full space.
    assert span_residual(reduced, basis).max() < 1e-4
    assert span_residual(full, basis).min() > 0.3
    # 0 means "off" (the command-line value): same as None.
    again = zoo(softmax_mnist, x, reduced_size=0, **settings) - x
    np.testing.assert_array_equal(again, full)


def test_bad_settings_fail_with_one_line_before_any_query():
    model = Counting(smooth_model(tf.float32))
    x = np.full((2, 6, 6, 1), 0.5, np.float32)
    bad = [dict(max_queries=0), dict(max_queries=8, batch_coordinates=4), dict(batch_coordinates=37),
           dict(batch_coordinates=5, reduced_size=2), dict(reduced_size=7), dict(h=0.0), dict(h=-1e-4),
           dict(learning_rate=0), dict(initial_const=-1.0), dict(query_batch_size=0)]
    for settings in bad:
        with pytest.raises(ConfigError) as error:
            zoo(model, x, np.array([0, 1]), **{"batch_coordinates": 8, **settings})
        assert "\n" not in str(error.value), settings
    with pytest.raises(ConfigError):
        coordinate_gradient(lambda images: tf.reduce_sum(images, [1, 2, 3]), x, np.zeros((2, 3), np.int32), h=0)
    assert model.sizes == []
    attack = registry.get("zoo")
    assert attack.parse_settings({"reduced_size": "0", "max_queries": "500", "batch_coordinates": "16"}) == {
        "reduced_size": 0, "max_queries": 500, "batch_coordinates": 16}
    with pytest.raises(ConfigError):
        attack.parse_settings({"max_queries": "many"})
