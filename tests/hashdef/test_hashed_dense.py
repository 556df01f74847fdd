"""HashedDense and its hash (HashedNets, Chen et al. 2015; hash paper section III-C; REFERENCE section 5)."""

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from hashdef import hashing
from hashdef.layers import hashed_dense
from hashdef.layers.hashed_dense import HashedDense  # importing the module registers the layer
from hrs_tf.errors import ConfigError
from hrs_tf.models import serialization

# xxhash.xxh32_intdigest(key bytes, seed) from the reference implementation (python-xxhash 4.1.0), computed once;
# keys are uint32 words, little-endian.
XXH32_REFERENCE = [
    ((), 0, 0x02CC5D05),  # the published empty-input vector
    ((0,), 0, 0x08D6D969),
    ((0, 0), 0, 0xDEB39513),
    ((255, 9), 0, 0xC1CE9F75),
    ((1, 2, 3), 0, 0x1F578C88),
    ((0,), 1691, 0x91DB7584),
    ((0, 0), 1691, 0x314F3B46),
    ((0, 1), 1691, 0x39FBA6C3),
    ((1, 0), 1691, 0x044F9B3B),
    ((3, 5), 1691, 0xE3006A91),
    ((255, 255), 1691, 0x774AC642),
    ((2047, 511), 1691, 0x6C71C1F1),
    ((0xFFFFFFFF, 0xFFFFFFFF), 1691, 0xD1AE5CE3),
    ((1, 2, 3), 1691, 0x770640B5),
    ((0, 0), 1692, 0x3A0A5B0A),
    ((0, 1), 1692, 0x430258E1),
    ((1, 0), 1692, 0x5DA3F9DB),
    ((2047, 511), 0xFFFFFFFF, 0x174225A3),
    ((0xFFFFFFFF, 0xFFFFFFFF), 0xFFFFFFFF, 0xA01706A2),
]


def numpy_virtual_kernel(n_in, n_out, weights, seed=hashing.DEFAULT_SEED):
    k = len(weights)
    return hashing.sign_table(n_in, n_out, seed) * np.asarray(weights)[hashing.bucket_table(n_in, n_out, k, seed)]


def test_xxh32_equals_the_reference_implementation():
    for key, seed, expected in XXH32_REFERENCE:
        assert int(hashing.xxh32(np.array(key, np.uint32), seed)) == expected, (key, seed)
    # Vectorised over rows: the same values as one row at a time.
    pairs = [(key, expected) for key, seed, expected in XXH32_REFERENCE if seed == 1691 and len(key) == 2][:6]
    rows = np.array([key for key, _ in pairs], np.uint32).reshape(2, -1, 2)
    np.testing.assert_array_equal(hashing.xxh32(rows, 1691), np.array([e for _, e in pairs], np.uint32).reshape(2, -1))


def test_tables_are_fixed_by_the_seed():
    buckets, signs = hashing.bucket_table(256, 256, 16, 1691), hashing.sign_table(256, 256, 1691)
    assert buckets.dtype == np.int32 and signs.dtype == np.float32 and buckets.shape == signs.shape == (256, 256)
    # The definition, entry by entry: h(i, j) = xxh32([i, j], 1691) mod 16, xi = lowest bit of xxh32([i, j], 1692).
    assert buckets[0, 0] == 0x314F3B46 % 16 == 6 and buckets[0, 1] == 0x39FBA6C3 % 16 == 3
    assert buckets[1, 0] == 0x044F9B3B % 16 == 11
    assert (signs[0, 0], signs[0, 1], signs[1, 0]) == (1.0, -1.0, -1.0)  # 0x3A0A5B0A even; 0x430258E1, 0x5DA3F9DB odd
    # Whole-table checksums, computed once with the reference xxhash: the same V on every platform.
    assert int(buckets.astype(np.int64).sum()) == 489522 and int(signs.sum()) == -328
    np.testing.assert_array_equal(hashing.bucket_table(256, 256, 16, 1691), buckets)
    np.testing.assert_array_equal(hashing.sign_table(256, 256, 1691), signs)
    assert buckets.min() == 0 and buckets.max() == 15
    # Another seed: independent tables (expected differing fractions 15/16 and 1/2).
    assert np.mean(hashing.bucket_table(256, 256, 16, 7) != buckets) > 0.9
    assert 0.45 < np.mean(hashing.sign_table(256, 256, 7) != signs) < 0.55
    big = hashing.bucket_table(300, 70, 1000, 3)
    assert big.min() >= 0 and big.max() < 1000 and len(np.unique(big)) > 990  # 21,000 draws miss a bucket w.p. ~1e-9


def test_signs_and_buckets_are_balanced():
    signs = hashing.sign_table(256, 256, hashing.DEFAULT_SEED)
    assert set(np.unique(signs)) == {-1.0, 1.0}
    # 65,536 fair bits: the fraction of +1 has binomial std 0.002; 0.02 is 10 sigma.
    assert abs(np.mean(signs == 1.0) - 0.5) < 0.02
    counts = np.bincount(hashing.bucket_table(256, 256, 16, hashing.DEFAULT_SEED).ravel(), minlength=16)
    # 4096 expected per bucket, binomial std 62; 10 sigma = 620.
    assert np.all(np.abs(counts - 4096) < 620)


@pytest.mark.parametrize("n_in,n_out,rate,expected", [
    (256, 256, 1 / 4096, 16), (256, 256, "1/4096", 16), (256, 10, 1 / 128, 20),
    (256, 256, 1 / 4096 * (1 + 1e-12), 16),  # float noise above an integer is not a bucket more
    (256, 256, 1 / 4096 * (1 + 1e-6), 17),  # a real excess is
    (3, 3, 0.5, 5), (10, 10, 1e-9, 1), (7, 5, 1.0, 35), (2048, 512, "1/8192", 128)])
def test_num_buckets(n_in, n_out, rate, expected):
    assert hashing.num_buckets(n_in, n_out, rate) == expected


def test_parse_rate():
    assert hashing.parse_rate("1/4096") == 1 / 4096
    assert hashing.parse_rate("0.25") == 0.25 and hashing.parse_rate("2.5e-4") == 2.5e-4 and hashing.parse_rate("1") == 1.0


def test_layer_holds_k_real_weights():
    layer = HashedDense(256, 1 / 4096)
    layer.build((None, 256))
    assert layer.count_params() == 16 + 256
    assert [tuple(w.shape) for w in layer.weights] == [(16,), (256,)]
    assert [w.name for w in layer.weights] == ["hashed_kernel", "bias"]
    assert layer.num_buckets == 16 and layer.virtual_shape == (256, 256)
    assert tuple(layer.virtual_kernel.shape) == (256, 256)
    no_bias = HashedDense(10, "1/128", use_bias=False)
    no_bias.build((None, 256))
    assert no_bias.count_params() == 20
    # Default init U(-1/sqrt(n_in), 1/sqrt(n_in)): n_in = 400, bound 0.05; 10,000 draws reach within 1e-3 of it.
    keras.utils.set_random_seed(0)
    wide = HashedDense(50, 0.5)
    wide.build((None, 400))
    w = wide.hashed_kernel.numpy()
    assert w.shape == (10000,) and np.abs(w).max() <= 0.05 and np.abs(w).max() > 0.049


def test_forward_equals_inputs_times_virtual_kernel():
    rng = np.random.default_rng(1)
    layer = HashedDense(23, 0.1, activation="tanh", hash_seed=5)
    x = rng.normal(size=(4, 3, 37)).astype(np.float32)  # rank 3: the kernel applies to the last axis
    layer.build(x.shape)
    weights, bias = rng.normal(size=layer.num_buckets).astype(np.float32), rng.normal(size=23).astype(np.float32)
    layer.set_weights([weights, bias])
    v = numpy_virtual_kernel(37, 23, weights, seed=5)
    assert layer.num_buckets == 86  # ceil(37 * 23 * 0.1 = 85.1)
    np.testing.assert_array_equal(layer.virtual_kernel.numpy(), v)  # sign * gathered weight: exact
    out = layer(x).numpy()
    assert out.shape == layer.compute_output_shape(x.shape) == (4, 3, 23)
    np.testing.assert_allclose(out, np.tanh(x.astype(np.float64) @ v + bias), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("split_from", [None, 1], ids=["one-call", "two-halves"])
def test_bucket_gradient_is_the_signed_sum_over_members(split_from, monkeypatch):
    if split_from is not None:  # the large-layer path: bucket sums over the two row halves, added
        monkeypatch.setattr(hashed_dense, "SPLIT_SUMS_MIN_ENTRIES", split_from)
    rng = np.random.default_rng(2)
    layer = HashedDense(7, 0.2, activation="tanh", dtype="float64")
    x = tf.constant(rng.normal(size=(5, 13)))
    layer.build(x.shape)
    layer.set_weights([rng.normal(size=layer.num_buckets), rng.normal(size=7)])
    upstream = tf.constant(rng.normal(size=(5, 7)))
    k = layer.num_buckets
    assert k == 19  # ceil(13 * 7 * 0.2 = 18.2)

    def loss_from(w, v=None, inputs=x):
        v = layer._virtual_kernel(w) if v is None else v
        return tf.reduce_sum(tf.tanh(inputs @ v + layer.bias) * upstream)

    w = tf.constant(layer.hashed_kernel.numpy())
    with tf.GradientTape() as tape:
        tape.watch([w, x])
        loss = loss_from(w)
    grad_w, grad_x = tape.gradient(loss, [w, x])
    v = tf.constant(numpy_virtual_kernel(13, 7, w.numpy()))
    with tf.GradientTape() as tape:
        tape.watch([v, x])
        dense_loss = loss_from(None, v)
    grad_v, dense_grad_x = tape.gradient(dense_loss, [v, x])
    # Bucket k receives the sum of xi * dL/dV over the entries hashed to it (numpy, from the dense gradient).
    expected = np.bincount(hashing.bucket_table(13, 7, k).ravel(), minlength=k,
                           weights=(hashing.sign_table(13, 7) * grad_v.numpy()).ravel())
    np.testing.assert_allclose(grad_w.numpy(), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad_x.numpy(), dense_grad_x.numpy(), rtol=1e-12, atol=1e-12)
    # Central finite differences in float64, h = 1e-5: truncation error ~h^2 * |L'''| ~ 1e-9, hence atol 1e-7.
    h, basis = 1e-5, np.eye(k)
    numeric = [(loss_from(w + h * e) - loss_from(w - h * e)).numpy() / (2 * h) for e in basis]
    np.testing.assert_allclose(grad_w.numpy(), numeric, rtol=1e-6, atol=1e-7)
    assert np.abs(grad_w.numpy()).min() > 1e-3, grad_w.numpy()  # no bucket is trivially zero


def leaf_datasets(path):
    sizes = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: sizes.__setitem__(name, item.size) if isinstance(item, h5py.Dataset) else None)
    return sizes


def test_h5_round_trip_saves_no_table(tmp_path):
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((40,)), HashedDense(32, 1 / 64, activation="relu", name="hashed_1"),
                              HashedDense(10, 0.5, hash_seed=77, kernel_initializer="he_normal", name="hashed_2")])
    x = np.random.default_rng(3).random((6, 40)).astype(np.float32)
    path = tmp_path / "hashed.h5"
    serialization.save_model(model, path)
    loaded = serialization.load_model(path)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    assert isinstance(loaded.layers[1], HashedDense) and loaded.layers[1].hash_seed == 77
    assert loaded.layers[1].get_config()["kernel_initializer"]["class_name"] == "HeNormal"
    assert loaded.layers[0].get_config()["kernel_initializer"] is None
    sizes = leaf_datasets(path)
    assert sorted(sizes.values()) == sorted([20, 32, 160, 10])  # K1 = ceil(1280 / 64), bias, K2 = 320 / 2, bias
    assert not {40 * 32, 32 * 10} & set(sizes.values())  # no index / sign table of either layer


def test_h5_file_shrinks_with_the_compression_rate(tmp_path):
    def saved_size(layer, name):
        model = keras.Sequential([keras.Input((256,)), layer, keras.layers.Dense(10, name="logits")])
        serialization.save_model(model, tmp_path / name)
        return (tmp_path / name).stat().st_size

    dense = saved_size(keras.layers.Dense(256, name="fc"), "dense.h5")
    hashed = saved_size(HashedDense(256, 1 / 64, name="fc"), "hashed.h5")
    # The kernel shrinks from 65,536 to 1,024 float32 (258,048 bytes; measured: exactly that, 289,648 -> 31,600
    # bytes); the rest (logits, config, HDF5 structure) is ~31 KB in both.
    assert dense - hashed > 0.95 * (65536 - 1024) * 4
    assert hashed / dense < 0.2


@pytest.mark.parametrize("kwargs,named", [
    (dict(units=4, compression_rate=0), "compression_rate"),
    (dict(units=4, compression_rate=1.5), "compression_rate"),
    (dict(units=4, compression_rate=-1), "compression_rate"),
    (dict(units=4, compression_rate="abc"), "compression_rate"),
    (dict(units=4, compression_rate=None), "compression_rate"),
    (dict(units=0, compression_rate=0.5), "units"),
    (dict(units=2.5, compression_rate=0.5), "units"),
    (dict(units=4, compression_rate=0.5, hash_seed=-1), "hash_seed"),
    (dict(units=4, compression_rate=0.5, hash_seed=2**32), "hash_seed"),
])
def test_bad_settings_give_one_line_errors(kwargs, named):
    with pytest.raises(ConfigError) as error:
        HashedDense(**kwargs)
    assert named in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("call", [lambda: hashing.parse_rate("abc"), lambda: hashing.parse_rate("0"),
                                  lambda: hashing.num_buckets(4, 4, 2), lambda: hashing.num_buckets(4, 4, "x/y")])
def test_bad_rates_in_the_hash_module(call):
    with pytest.raises(ConfigError, match="compression_rate") as error:
        call()
    assert "\n" not in str(error.value)


def test_trains_on_a_separable_problem():
    keras.utils.set_random_seed(4)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(128, 16)).astype(np.float32)
    y = (x @ rng.normal(size=16) > 0).astype(np.float32)[:, None]
    model = keras.Sequential([keras.Input((16,)), HashedDense(32, 1 / 8, activation="relu"), HashedDense(1, 1 / 2)])
    optimizer = keras.optimizers.Adam(0.01)
    loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    losses = [float(step()) for _ in range(60)]
    accuracy = np.mean((model(x).numpy() > 0) == (y > 0))
    # Measured (seed 4): loss 0.73 -> 0.10, training accuracy 0.98; bounds with margin.
    assert losses[-1] < 0.5 * losses[0] and accuracy > 0.85


def test_signed_codes_are_int16_while_they_fit_and_int32_beyond():
    from hashdef.layers.hashed_dense import signed_codes

    codes = signed_codes(np.array([[0, 2], [1, 2]]), np.array([[1.0, -1.0], [-1.0, 1.0]]), 3)
    np.testing.assert_array_equal(codes, [[4, 0], [1, 6]])  # K + xi (h + 1): table [-w2, -w1, -w0, 0, w0, w1, w2]
    assert codes.dtype == np.int16 and signed_codes([[16382]], [[1.0]], 16383).dtype == np.int16  # 2K + 1 = 32767
    assert signed_codes([[16383]], [[-1.0]], 16384).dtype == np.int32
    # A layer with more buckets than int16 codes can address is exact too (forward and bucket gradient).
    rng = np.random.default_rng(4)
    layer = HashedDense(200, 0.5, use_bias=False)
    layer.build((None, 200))
    assert layer.num_buckets == 20000 and layer._signed_code.dtype == tf.int32
    weights = rng.normal(size=20000).astype(np.float32)
    layer.set_weights([weights])
    np.testing.assert_array_equal(layer.virtual_kernel.numpy(), numpy_virtual_kernel(200, 200, weights))
    w = tf.constant(weights)
    with tf.GradientTape() as tape:
        tape.watch(w)
        v = layer._virtual_kernel(w)
    upstream = rng.normal(size=(200, 200)).astype(np.float32)
    expected = np.bincount(hashing.bucket_table(200, 200, 20000).ravel(), minlength=20000,
                           weights=(hashing.sign_table(200, 200) * upstream).ravel())
    np.testing.assert_allclose(tape.gradient(v, w, output_gradients=tf.constant(upstream)).numpy(), expected,
                               rtol=1e-5, atol=1e-5)
