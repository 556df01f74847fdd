"""Cost of Random Spiking at inference (issue 15 "Performance"; Random Spiking paper section 4 and Definition 2).

Times, in one run and interleaved, on one batch of ``--batch`` MNIST-shaped inputs (the RS paper's MNIST model,
untrained weights: timing does not depend on them):

1. a compiled forward pass of the RS-1 model (RandomSpiking p = 0.8 after conv1 + ReLU) against the same model
   without the layer. Target: <= 1.15x.
2. the MC average of 10 stochastic passes (mean softmax, argmax) against one compiled pass of the RS-1 model, three
   ways: ``randspike.decision.labels(rule="mc")`` (the evaluation's path: 10 eager passes, softmax in numpy); one
   ``tf.function`` running the 10 passes; one forward call on the batch tiled 10 times (the same result for RS-1:
   conv1 is deterministic, so the tiled batch has the range (min, max) of the original batch and every element its
   own draw). Target: <= 10.5x. Also one eager pass (``decision.pass_logits``), the unit of the evaluation's path.

    python benchmarks/bench_random_spiking.py --batch=512 --repeats=20 --mc_repeats=5
"""

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.common import timed  # noqa: E402
from randspike import architectures, decision  # noqa: E402

PASSES = decision.PASSES
FORWARD_TARGET, MC_TARGET = 1.15, 10.5


def interleaved_medians(runs, repeats):
    """Median seconds of each run, timed in turn within each repeat after one warm-up (trace) of each."""
    for run in runs.values():
        run()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(timed(run)[0])
    return {name: statistics.median(samples) for name, samples in times.items()}


def report(title, medians, base, targets):
    print(title)
    for name, seconds in medians.items():
        ratio = seconds / medians[base]
        target = f"  (target <= {targets[name]:.2f}x: {'met' if ratio <= targets[name] else 'NOT met'})" \
            if name in targets else ""
        print(f"  {name:40s} {1000 * seconds:9.1f} ms   {ratio:6.2f}x {base}{target}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=20, help="repeats of the forward-pass comparison")
    parser.add_argument("--mc_repeats", type=int, default=5, help="repeats of the MC comparison")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    x_numpy = np.random.default_rng(0).random((args.batch, 28, 28, 1), dtype=np.float32)
    x = tf.constant(x_numpy)
    rs1 = architectures.build_rs_mnist(keep_prob=architectures.KEEP_PROB, seed=0)
    plain = architectures.build_rs_mnist(seed=0)
    forward = {name: tf.function(lambda t, m=m: m(t, training=False)) for name, m in (("rs-1", rs1), ("plain", plain))}

    medians = interleaved_medians({"without the layer": lambda: forward["plain"](x).numpy(),
                                   "RS-1": lambda: forward["rs-1"](x).numpy()}, args.repeats)
    report(f"forward pass, batch {args.batch}, RS MNIST model ({rs1.count_params()} weights), median of "
           f"{args.repeats} (interleaved)", medians, "without the layer", {"RS-1": FORWARD_TARGET})

    @tf.function
    def mc_in_one_function(t):
        return tf.argmax(tf.add_n([tf.nn.softmax(rs1(t, training=False)) for _ in range(PASSES)]), axis=-1)

    @tf.function
    def mc_tiled(t):
        logits = rs1(tf.tile(t, [PASSES, 1, 1, 1]), training=False)
        return tf.argmax(tf.reduce_mean(tf.reshape(tf.nn.softmax(logits), [PASSES, -1, logits.shape[-1]]), 0), -1)

    runs = {
        "one pass": lambda: forward["rs-1"](x).numpy(),
        "one pass: decision.pass_logits (eager)": lambda: decision.pass_logits(rs1, x_numpy, 1, args.batch),
        "MC 10: decision.labels (eager passes)": lambda: decision.labels(rs1, x_numpy, rule=decision.MC_AVERAGE,
                                                                         batch_size=args.batch),
        "MC 10: one tf.function": lambda: mc_in_one_function(x).numpy(),
        "MC 10: batch tiled 10x": lambda: mc_tiled(x).numpy(),
    }
    medians = interleaved_medians(runs, args.mc_repeats)
    report(f"MC average of {PASSES} passes vs one pass of the RS-1 model, batch {args.batch}, median of "
           f"{args.mc_repeats} (interleaved)", medians, "one pass", {name: MC_TARGET for name in runs if name.startswith("MC")})


if __name__ == "__main__":
    main()
