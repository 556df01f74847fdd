"""HashedDense cost: forward + backward against a Dense layer of the same virtual shape, and the table build time.

    python benchmarks/bench_hashed_dense.py [--batch_size=128] [--repeats=5]

For each shape (the paper's MNIST hashed layers 256x256 at CR 1/4096 and 256x10 at CR 1/128, and 2048x512 at
CR 1/8192, the paper's largest added layer), one step = the layer's output and the gradient of
sum(output * upstream) with respect to its weights and its inputs, inside one ``tf.function`` (a ``tf.range``
loop of ``steps`` steps, so Python call overhead is not timed). Per-step time = (t[long] - t[short]) /
(long - short), median of interleaved repeats (benchmarks/common.py). Three ways to the same virtual kernel and
gradient: the layer's (XLA-compiled gather times signs, XLA-compiled bucket sums of the gradient), TF's
plain gather times signs differentiated by TF (its sparse gather gradient), and the layer's forward with TF's
weighted bincount as the bucket sums.
Targets: HashedDense / Dense <= 1.3x; bucket + sign tables of 2048x512 built in < 1 s. The hashed layer's extra
work (building V, one pass over n_in * n_out entries; summing dL/dV into the buckets, another) does not depend on
the batch, so the ratio falls as the batch grows (``--batch_size=512``).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from benchmarks.common import interleaved_per_step, timed  # noqa: E402

flags.DEFINE_integer("batch_size", 128, "Inputs per step.")
flags.DEFINE_integer("repeats", 5, "Interleaved timing repeats (the median is kept).")
flags.DEFINE_integer("short", 5, "Steps of the short run.")
flags.DEFINE_integer("long", 25, "Steps of the long run.")
FLAGS = flags.FLAGS

SHAPES = ((256, 256, "1/4096"), (256, 10, "1/128"), (2048, 512, "1/8192"))


def plain_gather_layer(units, rate):
    """A HashedDense whose virtual kernel is TF's gather times the signs, differentiated by TF (same V, same
    gradient: TF's gather gradient, sparse slices summed by its unsorted segment sum)."""
    import tensorflow as tf

    from hashdef.layers.hashed_dense import HashedDense

    class PlainGatherHashedDense(HashedDense):
        def _virtual_kernel(self, hashed_kernel):
            return tf.gather(tf.convert_to_tensor(hashed_kernel), self._bucket_index) * self._signs

    return PlainGatherHashedDense(units, rate)


def bincount_gradient_layer(units, rate):
    """A HashedDense with the layer's XLA forward and TF's bincount (weighted by signs * dL/dV) as bucket sums."""
    import tensorflow as tf

    from hashdef.layers import hashed_dense

    class BincountHashedDense(hashed_dense.HashedDense):
        def _virtual_kernel(self, hashed_kernel):
            index, signs = self._bucket_index, self._signs

            @tf.custom_gradient
            def gather_signed(w):
                def gradient(upstream):
                    return tf.math.bincount(tf.reshape(index, [-1]), weights=tf.reshape(upstream * signs, [-1]),
                                            minlength=w.shape[0], maxlength=w.shape[0])

                return hashed_dense._gather_signed(w, index, signs), gradient

            return gather_signed(tf.convert_to_tensor(hashed_kernel))

    return BincountHashedDense(units, rate)


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
        layers = (keras.layers.Dense(n_out), HashedDense(n_out, rate), plain_gather_layer(n_out, rate),
                  bincount_gradient_layer(n_out, rate))
        for layer in layers:
            layer.build((None, n_in))
        hashed = layers[1]
        runs = [step_runner(layer, x, upstream) for layer in layers]
        (t_dense, t_hashed, t_plain, t_bincount), _ = interleaved_per_step(runs, short, long, reps)
        print(f"{n_in}x{n_out} CR {rate_text} (K = {hashed.num_buckets}): Dense {1e3 * t_dense:7.3f} ms/step; "
              f"HashedDense {1e3 * t_hashed:7.3f} ms = {t_hashed / t_dense:.2f}x; "
              f"plain TF gather {1e3 * t_plain:7.3f} ms = {t_plain / t_dense:.2f}x; "
              f"XLA gather + TF bincount {1e3 * t_bincount:7.3f} ms = {t_bincount / t_dense:.2f}x  "
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
