"""Forward-pass cost of an HRS model relative to its base model (issue: HRS layer).

Times, in one run and interleaved, a compiled forward pass on one batch of MNIST-shaped inputs for:

- the base MNIST model;
- HRS 5x5, ``batch`` granularity (one path per batch: only the active channels run);
- HRS 5x5, ``sample`` granularity (per-example paths, grouped by channel);
- the published code's approach: every channel of every block computed, then all but one masked out.

Prints the median time of each and the ratios to the base model. Targets: batch <= 1.10x,
sample <= 1.30x; compute-all-and-mask is the ~5x baseline.

    python benchmarks/bench_hrs_forward.py --batch=512 --repeats=50
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from hrs_tf import models  # noqa: E402
from hrs_tf.defenses import hrs  # noqa: E402


class MaskAllChannels(keras.layers.Layer):
    """The published RandomMask approach: run all channels, keep one by a random one-hot mask."""

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels

    def call(self, x):
        outputs = tf.stack([c(x) for c in self.channels], axis=1)
        mask = tf.one_hot(tf.random.uniform([], 0, len(self.channels), dtype=tf.int32), len(self.channels))
        return tf.reduce_sum(outputs * tf.reshape(mask, [1, -1] + [1] * (len(outputs.shape) - 2)), axis=1)


def masked_model(hrs_model):
    inputs = keras.Input(shape=hrs_model.input_shape[1:])
    h = inputs
    for switch in hrs.switches(hrs_model):
        h = MaskAllChannels(switch.channels)(h)
    return keras.Model(inputs, h)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--channels", default="5,5")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    x = tf.constant(np.random.default_rng(0).random((args.batch, 28, 28, 1), dtype=np.float32))
    base = models.build_base_model("mnist")
    hrs_batch = hrs.build_hrs_model("mnist", args.channels, granularity="batch", seed=1)
    hrs_sample = hrs.with_granularity(hrs_batch, "sample", seed=2)
    candidates = {
        "base": base,
        "hrs batch": hrs_batch,
        "hrs sample": hrs_sample,
        "mask all channels": masked_model(hrs_batch),
    }
    forwards = {name: tf.function(lambda t, m=m: m(t, training=False)) for name, m in candidates.items()}
    for f in forwards.values():  # trace and warm up
        for _ in range(3):
            f(x).numpy()
    times = {name: [] for name in forwards}
    for _ in range(args.repeats):  # interleaved, so that machine load affects every candidate alike
        for name, f in forwards.items():
            start = time.perf_counter()
            f(x).numpy()
            times[name].append(time.perf_counter() - start)
    base_time = statistics.median(times["base"])
    targets = {"hrs batch": 1.10, "hrs sample": 1.30}
    print(f"forward pass, batch {args.batch}, HRS {args.channels}, median of {args.repeats} (interleaved)")
    for name, samples in times.items():
        median = statistics.median(samples)
        ratio = median / base_time
        target = f"  (target <= {targets[name]:.2f}x: {'met' if ratio <= targets[name] else 'NOT met'})" if name in targets else ""
        print(f"  {name:18s} {1000 * median:8.2f} ms   {ratio:5.2f}x base{target}")


if __name__ == "__main__":
    main()
