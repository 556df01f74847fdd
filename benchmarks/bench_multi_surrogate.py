"""Cost of one multi-surrogate C&W-L2 iteration (issue 16 "Performance"; Random Spiking paper section 5.2): 8 models
attacked at once (one traced computation) against one model, batch 100.

    python benchmarks/bench_multi_surrogate.py [--models=8] [--batch_size=100] [--short=2] [--long=8] [--repeats=3]

Surrogates: untrained RS MNIST CNNs (``randspike.architectures.build_rs_mnist``; cost does not depend on the weights),
once with RS-1 (Random Spiking after conv1, p = 0.8, random mode) and once deterministic (the Standard model, no RS,
no dropout). Targeted C&W-L2 with one constant (``binary_search_steps=1``) and ``abort_early=False``, so a call runs
exactly ``max_iterations`` iterations; per iteration = (t[long] - t[short]) / (long - short), the four runs timed in
turn within each repeat (shared machine), median over repeats. Target: 8 models <= 8.5x one model.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from benchmarks.common import define_mnist_flags, define_timing_flags, interleaved_per_step, mnist_images  # noqa: E402

flags.DEFINE_integer("models", 8, "Surrogates attacked at once.")
define_mnist_flags(model=False)
define_timing_flags(100, 3, short=2, long=8, unit="C&W iterations")
FLAGS = flags.FLAGS

TARGET_PER_MODEL = 8.5 / 8  # the issue: 8 models <= 8.5x one model


def main(argv):
    import keras

    from hrs_tf.attacks import cw_l2
    from randspike import architectures

    keras.utils.set_random_seed(0)
    x, y = mnist_images(FLAGS.data_dir, FLAGS.batch_size)
    rng = np.random.default_rng(0)
    labels = y if y is not None else rng.integers(0, 10, len(x))
    targets = (labels + rng.integers(1, 10, len(x))) % 10  # a random class other than the label
    n, count, short, long, reps = len(x), FLAGS.models, FLAGS.short, FLAGS.long, FLAGS.repeats
    fleets = {
        "RS-1 (p=0.8)": [architectures.build_rs_mnist(keep_prob=architectures.KEEP_PROB, seed=i, name=f"rs1_{i}")
                         for i in range(count)],
        "Standard (deterministic)": [architectures.build_rs_mnist(seed=i, name=f"standard_{i}") for i in range(count)],
    }
    print(f"images: {'MNIST test' if y is not None else 'random'}, batch {n}; targeted C&W-L2, binary_search_steps=1, "
          f"abort_early=False; per iteration = (t[{long}] - t[{short}]) / {long - short}, median of {reps} interleaved "
          f"repeats; surrogates: untrained RS MNIST CNNs ({fleets['Standard (deterministic)'][0].count_params()} "
          f"weights each)")

    def attack(model):
        return lambda steps: cw_l2(model, x, targets, targeted=True, binary_search_steps=1, max_iterations=steps,
                                   abort_early=False)

    runs, names = [], []
    for kind, fleet in fleets.items():
        runs += [attack(fleet[0]), attack(fleet)]
        names += [(kind, 1), (kind, count)]
    steps, estimates = interleaved_per_step(runs, short, long, reps)
    per = dict(zip(names, steps))
    spread = dict(zip(names, estimates))
    for kind in fleets:
        one, many = per[(kind, 1)], per[(kind, count)]
        ratio, target = many / one, TARGET_PER_MODEL * count
        print(f"{kind}:")
        for k in (1, count):
            print(f"  {k} model{'s' if k > 1 else ' '}: {1e3 * per[(kind, k)]:8.1f} ms/iteration  (repeats: "
                  f"{', '.join(f'{1e3 * e:.1f}' for e in spread[(kind, k)])})")
        print(f"  ratio {count} / 1 = {ratio:.2f}x  (target <= {target:g}x: {'met' if ratio <= target else 'NOT met'}"
              f"; {ratio / count:.2f}x the cost of {count} separate single-model iterations)")


if __name__ == "__main__":
    app.run(main)
