"""APGD step throughput against our PGD, and APGD-CE / APGD-DLR against PGD in success at the same budget.

    python benchmarks/bench_apgd.py [--model=runs/base_mnist.h5] [--batch_size=100] [--repeats=5]
                                    [--success_images=100] [--success_iter=100] [--success_eps=0.1,0.3]

Throughput: same model, same batch, L-inf eps 0.3, no random start; APGD-CE (``apgd_ce``) and PGD (``pgd``,
step 0.01) are each run for a short and a long number of steps, and the per-step time is the difference divided
by the extra steps (one-off costs, and APGD's extra initial gradient, cancel), the two timed in turn within each
repeat since the machine is shared. Target: APGD's throughput >= 0.9x PGD's.

Success: on the first ``success_images`` MNIST test images, untargeted, random start with seed 0 for every
attack, ``success_iter`` iterations each: APGD-CE, APGD-DLR, PGD with its default step (eps / 30) and PGD with
Madry et al.'s 2.5 eps / nb_iter step; the rate is over the images the model classifies correctly.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from benchmarks.common import (  # noqa: E402
    define_mnist_flags, define_timing_flags, interleaved_per_step, mnist_images, mnist_model)

define_mnist_flags()
define_timing_flags(100, 5, short=10, long=50, batch_help="Images per batch for the throughput.")
flags.DEFINE_integer("success_images", 100, "Test images for the success comparison (0: skip it).")
flags.DEFINE_integer("success_iter", 100, "Iterations of every attack in the success comparison.")
flags.DEFINE_list("success_eps", ["0.1", "0.3"], "L-inf budgets of the success comparison.")
FLAGS = flags.FLAGS


def main(argv):
    import keras

    from hrs_tf.attacks import apgd_ce, apgd_dlr, pgd

    keras.utils.set_random_seed(0)
    model, source = mnist_model(FLAGS.model)
    x_all, y_all = mnist_images(FLAGS.data_dir, max(FLAGS.batch_size, FLAGS.success_images))
    x = x_all[:FLAGS.batch_size]
    y = np.argmax(model(x, training=False), axis=1)
    n, short, long, reps = len(x), FLAGS.short, FLAGS.long, FLAGS.repeats
    print(f"model: {source}; batch {n}; L-inf eps 0.3, no random start; per step = (t[{long} steps] - "
          f"t[{short} steps]) / {long - short}, median of {reps} interleaved repeats")

    def apgd_run(steps):
        apgd_ce(model, x, y, eps=0.3, nb_iter=steps, rand_init=False)

    def pgd_run(steps):
        pgd(model, x, y, eps=0.3, eps_iter=0.01, nb_iter=steps, rand_init=False)

    (apgd_step, pgd_step), (apgd_all, pgd_all) = interleaved_per_step([apgd_run, pgd_run], short, long, reps)
    ratio = pgd_step / apgd_step
    ratios = sorted(p / a for a, p in zip(apgd_all, pgd_all))
    print(f"APGD-CE: {1e3 * apgd_step:7.2f} ms/step  ({n / apgd_step:6.0f} example-steps/s)")
    print(f"PGD:     {1e3 * pgd_step:7.2f} ms/step  ({n / pgd_step:6.0f} example-steps/s)")
    print(f"throughput ratio APGD / PGD = {ratio:.2f} (per-repeat ratios {', '.join(f'{r:.2f}' for r in ratios)}); "
          f"target >= 0.9: {'met' if ratio >= 0.9 else 'NOT met'}")

    if FLAGS.success_images <= 0 or y_all is None:
        return
    xs, ys = x_all[:FLAGS.success_images], y_all[:FLAGS.success_images]
    correct = np.argmax(model(xs, training=False), axis=1) == ys
    iters = FLAGS.success_iter
    print(f"\nsuccess (untargeted, {iters} iterations, random start seed 0) on the {correct.sum()} of {len(xs)} test "
          f"images the model classifies correctly:")
    for eps in (float(e) for e in FLAGS.success_eps):
        runs = {
            "APGD-CE": lambda: apgd_ce(model, xs, ys, eps=eps, nb_iter=iters, seed=0),
            "APGD-DLR": lambda: apgd_dlr(model, xs, ys, eps=eps, nb_iter=iters, seed=0),
            "PGD step eps/30": lambda: pgd(model, xs, ys, eps=eps, nb_iter=iters, seed=0),
            f"PGD step 2.5eps/{iters}": lambda: pgd(model, xs, ys, eps=eps, eps_iter=2.5 * eps / iters, nb_iter=iters,
                                                    seed=0),
        }
        cells = []
        for name, run in runs.items():
            start = time.perf_counter()
            adv = run()
            seconds = time.perf_counter() - start
            fooled = np.argmax(model(adv, training=False), axis=1) != ys
            assert np.abs(adv - xs).max() <= eps + 1e-6
            cells.append(f"{name} {np.mean(fooled[correct]):.2f} ({seconds:.1f} s)")
        print(f"  eps {eps:g}: " + "; ".join(cells))


if __name__ == "__main__":
    app.run(main)
