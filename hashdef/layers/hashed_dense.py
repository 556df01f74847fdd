"""``HashedDense``: a fully connected layer whose weights are shared through a hash (HashedNets, Chen et al. 2015,
"hashing trick"; hash paper section III-C; REFERENCE section 5)."""

import keras
import numpy as np
import tensorflow as tf

from hrs_tf import checks
from hrs_tf.errors import ModelError
from hashdef import hashing


# The bucket and the sign of each virtual weight are held as one "signed code" c(i, j) = K + xi(i, j) * (h(i, j) + 1):
# int16 while the 2K + 1 codes fit (every layer of the paper), a third of the memory an int32 bucket table plus a
# float sign table take, and both passes read it once per step. V[i, j] = sign(c - K) * w[|c - K| - 1]; the
# gradient into bucket k is the sum of dL/dV over code K + 1 + k minus the sum over code K - 1 - k (one segment sum
# over 2K + 1 codes, no sign multiply). Both run XLA-compiled (one compilation per shape, cached): TF's own gather
# and its gradient (sparse slices summed by its unsorted segment sum) make a HashedDense step about 10x a Dense one
# at batch 128 (benchmarks/bench_hashed_dense.py, forward + backward, on the paper's layers).
@tf.function(jit_compile=True, autograph=False, reduce_retracing=True)
def _gather_signed(weights, signed_code):
    code = tf.cast(signed_code, tf.int32) - tf.shape(weights)[0]  # xi * (h + 1)
    return tf.gather(weights, tf.abs(code) - 1) * tf.cast(tf.sign(code), weights.dtype)


@tf.function(jit_compile=True, autograph=False, reduce_retracing=True)
def _bucket_sums(upstream, signed_code, num_buckets):
    sums = tf.math.unsorted_segment_sum(tf.reshape(upstream, [-1]), tf.reshape(tf.cast(signed_code, tf.int32), [-1]),
                                        2 * num_buckets + 1)
    return sums[num_buckets + 1:] - tf.reverse(sums[:num_buckets], [0])


# From this many virtual entries on, the bucket sums run as two XLA calls, one per half of the kernel's rows, summed:
# TF's executor runs the two side by side when two cores are free, and the sums are the one pass of the layer's
# extra work that does not parallelise inside XLA (2048x512: 8-16% off a step; docs/hashdef.md). On the paper's
# 256x256 layer the split was not shown to help (within the benchmark's noise), so small layers keep one call. The
# split depends only on the layer's shape, so a model's gradients do not depend on the machine's cores.
SPLIT_SUMS_MIN_ENTRIES = 1 << 19


def bucket_sums(upstream, signed_code, num_buckets):
    """Gradient into the K = ``num_buckets`` real weights from ``upstream`` = dL/dV: for bucket k, the sum of dL/dV
    over code K + 1 + k minus the sum over code K - 1 - k (see above), in two row halves from
    ``SPLIT_SUMS_MIN_ENTRIES`` entries on."""
    rows = int(signed_code.shape[0])
    if rows < 2 or int(np.prod(signed_code.shape)) < SPLIT_SUMS_MIN_ENTRIES:
        return _bucket_sums(upstream, signed_code, num_buckets)
    halves = [rows // 2, rows - rows // 2]
    return tf.add_n([_bucket_sums(part, codes, num_buckets)
                     for part, codes in zip(tf.split(upstream, halves), tf.split(signed_code, halves))])


def signed_codes(bucket_index, signs, num_buckets):
    """The codes ``K + signs * (bucket_index + 1)`` of :func:`signed_gather` (K = ``num_buckets``), int16 when the
    2K + 1 codes fit, else int32."""
    codes = num_buckets + np.where(np.asarray(signs) < 0, -1, 1) * (np.asarray(bucket_index, np.int64) + 1)
    return codes.astype(np.int16 if 2 * num_buckets + 1 <= np.iinfo(np.int16).max else np.int32)


def signed_gather(weights, signed_code, sums=bucket_sums):
    """HashedNets' virtual kernel ``V = xi * weights[h]`` (hash paper section III-C; REFERENCE section 5) read
    through the signed codes of the layer (see above), with the gradient into bucket k = the sum of ``xi * dL/dV``
    over the entries hashed to k (the gather's gradient, written out so that it runs as one dense XLA reduction;
    ``sums`` computes it, :func:`bucket_sums` unless a benchmark swaps it)."""

    @tf.custom_gradient
    def gather_signed(w):
        def gradient(upstream):
            return sums(upstream, signed_code, int(w.shape[0]))

        return _gather_signed(w, signed_code), gradient

    return gather_signed(weights)


@keras.saving.register_keras_serializable(package="hashdef")
class HashedDense(keras.layers.Layer):
    """Dense layer with a virtual n_in x n_out kernel ``V[i, j] = xi(i, j) * w[h(i, j)]`` built from
    K = ceil(n_in * n_out * compression_rate) real weights ``w`` (``hashed_kernel``); h and xi are the seeded
    xxHash32 bucket and sign hashes of :mod:`hashdef.hashing` (HashedNets, Chen et al. 2015; hash paper
    section III-C). ``outputs = activation(inputs @ V + bias)``.

    The bucket and sign tables are computed once in :meth:`build`, held as one constant of signed codes (not
    weights; :func:`signed_gather`) and never saved: a saved model holds the K real weights and the bias;
    ``hash_seed`` and ``compression_rate`` are in the config. The gradient into bucket k is the sum of
    xi(i, j) * dL/dV[i, j] over the (i, j) hashed to k (:func:`signed_gather`). ``kernel_initializer=None``:
    U(-1/sqrt(n_in), 1/sqrt(n_in)) (REFERENCE section 5).
    """

    def __init__(self, units, compression_rate, activation=None, use_bias=True, hash_seed=hashing.DEFAULT_SEED,
                 kernel_initializer=None, bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.units = checks.count(units, "units", minimum=1)
        self.compression_rate = hashing.parse_rate(compression_rate)
        self.hash_seed = hashing.check_seed(hash_seed)
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = None if kernel_initializer is None else keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.supports_masking = True

    def build(self, input_shape):
        n_in = input_shape[-1]
        if n_in is None:
            raise ModelError(f"layer {self.name!r} (HashedDense) needs inputs with a known last dimension; got "
                             f"shape {tuple(input_shape)}")
        n_in = int(n_in)
        self._virtual_shape = (n_in, self.units)
        k = hashing.num_buckets(n_in, self.units, self.compression_rate)
        initializer = self.kernel_initializer
        if initializer is None:
            limit = 1.0 / np.sqrt(n_in)
            initializer = keras.initializers.RandomUniform(-limit, limit)
        self.hashed_kernel = self.add_weight(name="hashed_kernel", shape=(k,), initializer=initializer)
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer=self.bias_initializer) \
            if self.use_bias else None
        # Derived from (n_in, units, K, hash_seed): constants made once here, outside any traced function.
        with tf.init_scope():
            self._signed_code = tf.constant(signed_codes(hashing.bucket_table(n_in, self.units, k, self.hash_seed),
                                                   hashing.sign_table(n_in, self.units, self.hash_seed), k))
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: n_in})

    @property
    def num_buckets(self):
        """K, the number of real weights of the kernel."""
        return int(self.hashed_kernel.shape[0])

    @property
    def virtual_shape(self):
        """``(n_in, n_out)`` of the virtual kernel."""
        return self._virtual_shape

    @property
    def virtual_kernel(self):
        """The virtual kernel V (n_in x n_out) from the current real weights."""
        return self._virtual_kernel(self.hashed_kernel)

    def _virtual_kernel(self, hashed_kernel):
        return signed_gather(tf.convert_to_tensor(hashed_kernel), self._signed_code)

    def call(self, inputs):
        outputs = keras.ops.matmul(inputs, self._virtual_kernel(self.hashed_kernel))
        if self.bias is not None:
            outputs = outputs + self.bias
        return self.activation(outputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            compression_rate=self.compression_rate,
            activation=keras.activations.serialize(self.activation),
            use_bias=self.use_bias,
            hash_seed=self.hash_seed,
            kernel_initializer=None if self.kernel_initializer is None
            else keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
        )
        return config
