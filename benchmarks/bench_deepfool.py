"""DeepFool cost: one DeepFool run (defaults: 10 candidates, overshoot 0.02, at most 50 steps, L2) against one
PGD-40 run (L-inf, eps 0.3, random start) on the same batch, and the cost of the candidates' gradients.

    python benchmarks/bench_deepfool.py [--model=runs/base_mnist.h5] [--batch_size=100] [--repeats=3]

Both attacks are traced once first; the timed calls are interleaved (the machine is shared) and the median kept.
DeepFool runs until every example is fooled (it then stops), so its cost depends on the model; it is also
reported in PGD-step equivalents. Second part: the 9 candidate gradients of one DeepFool step taken through
``gradients.value_and_grad`` (one forward pass, one backward pass per candidate: the path that EOT and BPDA
need) against one ``tape.batch_jacobian`` of the 9 logit differences. Target: DeepFool < 10x PGD-40.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from benchmarks.common import attack_batch, define_mnist_flags, define_timing_flags, timed  # noqa: E402

define_mnist_flags()
define_timing_flags(100, 3)
FLAGS = flags.FLAGS


def main(argv):
    import tensorflow as tf

    from hrs_tf.attacks import deepfool, gradients, pgd
    from hrs_tf.attacks.deepfool import _difference_objective, robustness

    model, source, x, y = attack_batch(FLAGS)
    n, reps = len(x), FLAGS.repeats
    print(f"model: {source}; batch {n}; DeepFool defaults (L2, 10 candidates, overshoot 0.02, max 50 steps) vs "
          f"PGD-40 (L-inf eps 0.3, step 0.01, random start); median of {reps} interleaved calls after one traced call")

    def run_deepfool():
        return deepfool(model, x, y)

    def run_pgd():
        return pgd(model, x, y, eps=0.3, nb_iter=40, seed=0)

    trace_df, adv = timed(run_deepfool)
    trace_pgd, _ = timed(run_pgd)
    times = {"deepfool": [], "pgd": []}
    for _ in range(reps):
        times["deepfool"].append(timed(run_deepfool)[0])
        times["pgd"].append(timed(run_pgd)[0])
    df, pg = float(np.median(times["deepfool"])), float(np.median(times["pgd"]))
    steps = []
    for k in range(1, 51):  # steps DeepFool needed per example: smallest max_iter that fools it
        fooled = np.argmax(model(deepfool(model, x, y, max_iter=k), training=False), axis=1) != y
        steps.append(fooled)
        if fooled.all():
            break
    steps = np.array(steps)
    needed = np.where(steps.any(axis=0), steps.argmax(axis=0) + 1, np.inf)
    pred = np.argmax(model(adv, training=False), axis=1)
    l2 = np.sqrt(((adv - x) ** 2).reshape(n, -1).sum(axis=1))
    print(f"DeepFool: {df:.2f} s per call (first call with tracing {trace_df:.2f} s); success {np.mean(pred != y):.0%}; "
          f"steps per example median {np.median(needed):.0f}, max {np.max(needed):.0f} (the batch runs until the last "
          f"one); mean L2 {l2.mean():.3f}; rho_adv {robustness(x, adv):.4f}")
    print(f"PGD-40:   {pg:.2f} s per call (first call with tracing {trace_pgd:.2f} s)")
    ratio = df / pg
    print(f"wall time ratio DeepFool / PGD-40 = {ratio:.2f} (= {40 * ratio:.0f} PGD steps; per-repeat "
          f"{', '.join(f'{a / b:.2f}' for a, b in zip(times['deepfool'], times['pgd']))}); target < 10x: "
          f"{'met' if ratio < 10 else 'NOT met'}")

    # The candidate gradients of one DeepFool step: K = 10 candidates -> 9 logit differences.
    z = np.asarray(model(x, training=False))
    labels = tf.constant(np.argsort(-z, axis=1)[:, :10].astype(np.int32))
    objective = _difference_objective(10)
    tapes = tf.function(lambda x, labels: gradients.value_and_grad(model, objective, x, labels)[1])

    def jacobian(x, labels):
        with tf.GradientTape() as tape:
            tape.watch(x)
            z = tf.gather(model(x, training=False), labels, batch_dims=1)
            diff = z[:, 1:] - z[:, :1]
        return tape.batch_jacobian(diff, x)

    jacobian = tf.function(jacobian)
    xt = tf.constant(x)
    trace_tapes, g_tapes = timed(lambda: tapes(xt, labels))
    trace_jac, g_jac = timed(lambda: jacobian(xt, labels))
    assert np.allclose(np.stack([g.numpy() for g in g_tapes], axis=1), g_jac.numpy(), atol=1e-5)
    t_tapes, t_jac = [], []
    for _ in range(max(reps, 5)):
        t_tapes.append(timed(lambda: tapes(xt, labels))[0])
        t_jac.append(timed(lambda: jacobian(xt, labels))[0])
    a, b = float(np.median(t_tapes)), float(np.median(t_jac))
    print(f"9 candidate gradients: value_and_grad (9 tapes) {1e3 * a:.0f} ms (trace {trace_tapes:.2f} s) vs "
          f"batch_jacobian {1e3 * b:.0f} ms (trace {trace_jac:.2f} s): ratio {a / b:.2f}")


if __name__ == "__main__":
    app.run(main)
