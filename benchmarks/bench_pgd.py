"""PGD step throughput: ours vs CleverHans 4.0.0's ``projected_gradient_descent``, and the cost of EOT(10).

    python benchmarks/bench_pgd.py [--model=runs/base_mnist.h5] [--batch_size=100] [--repeats=3]

Same model, same batch, same settings (L-inf, eps 0.3, step 0.01, no random start). Per-step time is
the difference between a long and a short run divided by the extra steps (one-off costs cancel), ours and
CleverHans's timed in turn within each repeat, since the machine is shared. EOT(10) cost: an EOT(10)
input gradient (10 separate passes) against one gradient, on the base model and an HRS 5x5 model.
Targets: ours / CleverHans throughput ratio >= 1.0; EOT(10) <= 11x one gradient.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from benchmarks.common import (  # noqa: E402
    attack_batch, define_mnist_flags, define_timing_flags, interleaved_per_step, timed)

define_mnist_flags()
define_timing_flags(100, 5, short=10, long=50)
FLAGS = flags.FLAGS


def main(argv):
    from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent

    from hrs_tf.defenses import hrs
    from hrs_tf.attacks import gradients, pgd

    model, source, x, y = attack_batch(FLAGS)
    n, short, long, reps = len(x), FLAGS.short, FLAGS.long, FLAGS.repeats
    print(f"model: {source}; batch {n}; L-inf PGD eps 0.3, step 0.01, no random start; per step = "
          f"(t[{long} steps] - t[{short} steps]) / {long - short}, median of {reps} interleaved repeats")

    def ours(steps, m=model, eot=1):
        pgd(m, x, y, eps=0.3, eps_iter=0.01, nb_iter=steps, rand_init=False, eot_samples=eot)

    def theirs(steps):
        projected_gradient_descent(lambda t: model(t), x, 0.3, 0.01, steps, np.inf, clip_min=0.0, clip_max=1.0, y=y,
                                   rand_init=False)

    (ours_step, theirs_step), (ours_all, theirs_all) = interleaved_per_step([ours, theirs], short, long, reps)
    ratios = sorted(t / o for o, t in zip(ours_all, theirs_all))
    ratio = theirs_step / ours_step
    print(f"ours:        {1e3 * ours_step:7.2f} ms/step  ({n / ours_step:6.0f} example-steps/s)")
    print(f"CleverHans:  {1e3 * theirs_step:7.2f} ms/step  ({n / theirs_step:6.0f} example-steps/s)")
    print(f"throughput ratio ours / CleverHans = {ratio:.2f} (per-repeat ratios {', '.join(f'{r:.2f}' for r in ratios)}); "
          f"target >= 1.0: {'met' if ratio >= 1.0 else 'NOT met'}")
    ours_call = float(np.median([timed(lambda: ours(40))[0] for _ in range(reps)]))
    theirs_call = float(np.median([timed(lambda: theirs(40))[0] for _ in range(reps)]))
    print(f"one 40-step call end to end (our traced loop cached per model): ours {ours_call:.2f} s, "
          f"CleverHans {theirs_call:.2f} s")

    hrs_model = hrs.build_hrs_model("mnist", (5, 5), seed=0)
    for name, m in (("base model", model), ("HRS 5x5 model (untrained)", hrs_model)):
        def grad(samples, m=m):
            gradients.input_gradient(m, x, y, samples=samples)

        grad(1), grad(10)
        one = [timed(lambda: grad(1))[0] for _ in range(reps)]
        ten = [timed(lambda: grad(10))[0] for _ in range(reps)]
        cost = float(np.median(ten) / np.median(one))
        print(f"EOT(10) gradient on the {name}: {1e3 * np.median(ten):7.1f} ms vs {1e3 * np.median(one):6.1f} ms "
              f"for one gradient = {cost:.2f}x  (target <= 11x: {'met' if cost <= 11 else 'NOT met'})")
        (step1, step10), _ = interleaved_per_step([lambda s, m=m: ours(s, m, 1), lambda s, m=m: ours(s, m, 10)], 2, 6,
                                                  reps)
        print(f"  within PGD: {1e3 * step10:7.1f} ms/step with EOT(10) vs {1e3 * step1:6.1f} ms/step = "
              f"{step10 / step1:.2f}x")


if __name__ == "__main__":
    app.run(main)
