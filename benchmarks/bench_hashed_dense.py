"""HashedDense cost: forward + backward against a Dense layer of the same virtual shape, and the table build time.

    python benchmarks/bench_hashed_dense.py [--batch_size=128] [--repeats=5]

For each shape (the paper's MNIST hashed layers 256x256 at CR 1/4096 and 256x10 at CR 1/128, and 2048x512 at
CR 1/8192, the paper's largest added layer), one step = the layer's output and the gradient of
sum(output * upstream) with respect to its weights and its inputs, inside one ``tf.function`` (a ``tf.range``
loop of ``steps`` steps, so Python call overhead is not timed). Per-step time = (t[long] - t[short]) /
(long - short), median of interleaved repeats (benchmarks/common.py). Four ways to the same virtual kernel and
gradient: the layer's (one int16 signed code per entry, XLA-compiled lookup and bucket sums), TF's
plain gather of an int32 bucket table times a float sign table, differentiated by TF (its sparse gather gradient),
the same two tables with the XLA-compiled gather and bucket sums (the layer's layout before the signed codes), and
the layer with its bucket sums always in one XLA call (it splits them in two from ``SPLIT_SUMS_MIN_ENTRIES`` on).
Targets: HashedDense / Dense <= 1.3x; bucket + sign tables of 2048x512 built in < 1 s. The hashed layer's extra
work (building V, one pass over n_in * n_out entries; summing dL/dV into the buckets, another) does not depend on
the batch, so the ratio falls as the batch grows (``--batch_size=512``).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from benchmarks.common import define_timing_flags, interleaved_per_step, timed  # noqa: E402

define_timing_flags(128, 5, short=5, long=25, batch_help="Inputs per step.")
FLAGS = flags.FLAGS

SHAPES = ((256, 256, "1/4096"), (256, 10, "1/128"), (2048, 512, "1/8192"))


def index_and_sign_layer(units, rate, xla):
    """A HashedDense holding the int32 bucket table and the float sign table (the layer's layout before its signed
    codes), V = gather(w, bucket) * sign. ``xla=False``: TF's gather differentiated by TF (its sparse gather
    gradient, slices summed by its unsorted segment sum); ``xla=True``: the gather and the bucket sums
    XLA-compiled, the gradient written out (same V, same gradient)."""
    import tensorflow as tf

    from hashdef import hashing
    from hashdef.layers.hashed_dense import HashedDense

    @tf.function(jit_compile=True, autograph=False)
    def gather_signed(w, index, signs):
        return tf.gather(w, index) * signs

    @tf.function(jit_compile=True, autograph=False)
    def bucket_sums(upstream, index, signs, k):
        return tf.math.unsorted_segment_sum(tf.reshape(upstream * signs, [-1]), tf.reshape(index, [-1]), k)

    class IndexAndSignHashedDense(HashedDense):
        def build(self, input_shape):
            super().build(input_shape)
            n_in, k = int(input_shape[-1]), self.num_buckets
            self._index = tf.constant(hashing.bucket_table(n_in, self.units, k, self.hash_seed))
            self._signs = tf.constant(hashing.sign_table(n_in, self.units, self.hash_seed), tf.float32)

        def _virtual_kernel(self, hashed_kernel):
            w, index, signs = tf.convert_to_tensor(hashed_kernel), self._index, self._signs
            if not xla:
                return tf.gather(w, index) * signs

            @tf.custom_gradient
            def gathered(w):
                return gather_signed(w, index, signs), lambda up: bucket_sums(up, index, signs, int(w.shape[0]))

            return gathered(w)

    return IndexAndSignHashedDense(units, rate)


def one_call_sums_layer(units, rate):
    """The layer with its bucket sums always in one XLA call (as below ``SPLIT_SUMS_MIN_ENTRIES``)."""
    import tensorflow as tf

    from hashdef.layers import hashed_dense

    class OneCallSumsHashedDense(hashed_dense.HashedDense):
        def _virtual_kernel(self, hashed_kernel):
            return hashed_dense.signed_gather(tf.convert_to_tensor(hashed_kernel), self._signed_code,
                                              sums=hashed_dense._bucket_sums)

    return OneCallSumsHashedDense(units, rate)


def step_runner(layer, x, upstream):
    """``run(steps)``: ``steps`` forward + backward passes of ``layer`` in one traced function."""
    import tensorflow as tf

    @tf.function
    def loop(steps):
        total = tf.constant(0.0)
        for _ in tf.range(steps):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(layer(x) * upstream)
            grads = tape.gradient(loss, [x] + layer.trainable_variables)
            total += tf.add_n([tf.reduce_sum(tf.convert_to_tensor(g)) for g in grads])
        return total

    def run(steps):
        return float(loop(tf.constant(steps)))

    return run


def main(argv):
    import keras
    import tensorflow as tf

    from hashdef import hashing
    from hashdef.layers.hashed_dense import HashedDense

    tf.get_logger().setLevel("ERROR")  # one traced loop per layer is intended: no retracing warnings
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    short, long, reps, batch = FLAGS.short, FLAGS.long, FLAGS.repeats, FLAGS.batch_size
    print(f"batch {batch}; one step = forward + gradient w.r.t. weights and inputs, in a tf.function loop; per step = "
          f"(t[{long}] - t[{short}]) / {long - short}, median of {reps} interleaved repeats; "
          f"{os.cpu_count()} CPUs, TF {tf.__version__}")
    for n_in, n_out, rate_text in SHAPES:
        rate = hashing.parse_rate(rate_text)
        x = tf.constant(rng.random((batch, n_in), dtype=np.float32))
        upstream = tf.constant(rng.normal(size=(batch, n_out)).astype(np.float32))
        layers = (keras.layers.Dense(n_out), HashedDense(n_out, rate), index_and_sign_layer(n_out, rate, xla=False),
                  index_and_sign_layer(n_out, rate, xla=True), one_call_sums_layer(n_out, rate))
        for layer in layers:
            layer.build((None, n_in))
        hashed = layers[1]
        runs = [step_runner(layer, x, upstream) for layer in layers]
        (t_dense, t_hashed, t_plain, t_previous, t_one_call), _ = interleaved_per_step(runs, short, long, reps)
        print(f"{n_in}x{n_out} CR {rate_text} (K = {hashed.num_buckets}): Dense {1e3 * t_dense:7.3f} ms/step; "
              f"HashedDense {1e3 * t_hashed:7.3f} ms = {t_hashed / t_dense:.2f}x; "
              f"plain TF gather {1e3 * t_plain:7.3f} ms = {t_plain / t_dense:.2f}x; "
              f"XLA index + sign layout {1e3 * t_previous:7.3f} ms = {t_previous / t_dense:.2f}x; "
              f"bucket sums in one call {1e3 * t_one_call:7.3f} ms = {t_one_call / t_dense:.2f}x  "
              f"(target <= 1.3x: {'met' if t_hashed / t_dense <= 1.3 else 'NOT met'}; the extra "
              f"{1e3 * (t_hashed - t_dense):.3f} ms/step is mostly batch-independent)")
    n_in, n_out, rate_text = SHAPES[-1]
    k = hashing.num_buckets(n_in, n_out, hashing.parse_rate(rate_text))
    times = [timed(lambda: (hashing.bucket_table(n_in, n_out, k), hashing.sign_table(n_in, n_out)))[0]
             for _ in range(reps)]
    build = float(np.median(times))
    print(f"bucket + sign tables of {n_in}x{n_out} (K = {k}): {1e3 * build:.1f} ms, median of {reps} "
          f"(target < 1 s: {'met' if build < 1.0 else 'NOT met'})")
    layer = HashedDense(n_out, rate_text)
    build_layer = timed(lambda: layer.build((None, n_in)))[0]
    x = tf.constant(rng.random((batch, n_in), dtype=np.float32))
    first_call = timed(lambda: layer(x).numpy())[0]
    print(f"HashedDense({n_out}, {rate_text}).build((None, {n_in})) (weights + tables as constants): "
          f"{1e3 * build_layer:.1f} ms; its first call (XLA compilation, once per shape): {1e3 * first_call:.1f} ms")


if __name__ == "__main__":
    app.run(main)
