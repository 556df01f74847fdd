"""ZOO-ADAM query throughput against ``model.predict`` on the same images, and ZOO's untargeted success on MNIST.

    python benchmarks/bench_zoo.py [--model=runs/base_mnist.h5] [--batch_size=10] [--repeats=3]
                                   [--success_images=10] [--max_queries=100000]

Throughput: queries per second during the attack (``stats["queries"]`` over wall time) on ``batch_size`` MNIST
test images, per iteration = (t[long] - t[short]) / extra iterations (tracing and set-up cancel), abort early
off; against ``model.predict`` (its default batch size, and one batch) on the same number of images,
``batch_size * (2 * 128 + 1)``, the images one ZOO iteration sends. The attack and predict are timed in turn
within each repeat (the machine is shared), medians kept. Target: ZOO / predict >= 0.8. Also timed: ZOO with
``query_batch_size`` (pieces of whole examples), which trades the one-call-per-iteration property for cache-sized
batches.

Success: untargeted ZOO with its defaults (c = 10, eta 1e-2, B 128, h 1e-4, one constant) and a budget of
``max_queries`` per image on the first ``success_images`` correctly classified test images: success rate, mean
queries, mean L2 of the successes, time. Model: runs/base_mnist.h5 if present, else the tests' small trained
MNIST CNN (2 epochs on 8000 images, ~93%).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from benchmarks.common import define_timing_flags, timed  # noqa: E402

flags.DEFINE_string("model", "runs/base_mnist.h5", "Model to attack (a small trained MNIST CNN if missing).")
flags.DEFINE_string("data_dir", "../shared/data", "MNIST location.")
define_timing_flags(10, 3, short=2, long=6, unit="Iterations",
                    batch_help="Images attacked at once for the throughput figure.")
flags.DEFINE_integer("query_batch_size", 1028, "query_batch_size of the chunked variant (0: skip it).")
flags.DEFINE_integer("success_images", 10, "Images of the success measurement (0: skip it).")
flags.DEFINE_integer("max_queries", 100000, "Query budget per image of the success measurement.")
FLAGS = flags.FLAGS


def load(path, mnist):
    import keras

    from hrs_tf import models, training
    from hrs_tf.models import serialization

    if os.path.isfile(path):
        return serialization.load_model(path), path
    keras.utils.set_random_seed(0)
    model = models.build_base_model("mnist")
    training.fit(model, mnist.x_train[:8000], mnist.y_train[:8000], epochs=2, seed=0, verbose=0)
    return model, "small trained MNIST CNN (2 epochs on 8000 images; runs/base_mnist.h5 missing)"


def main(argv):
    from hrs_tf import data
    from hrs_tf.attacks.zoo import zoo

    mnist = data.load_dataset("mnist", FLAGS.data_dir)
    model, source = load(FLAGS.model, mnist)
    batch = 128
    cost = 2 * batch + 1
    x = mnist.x_test[:FLAGS.batch_size]
    y = np.argmax(model.predict(x, verbose=0), axis=1)
    n, short, long, reps = len(x), FLAGS.short, FLAGS.long, FLAGS.repeats
    noise = np.random.default_rng(0).normal(0, 1e-4, (n * cost,) + x.shape[1:]).astype(np.float32)
    images = np.repeat(x, cost, axis=0) + noise  # as many images as one ZOO iteration sends
    print(f"model: {source}; {n} images; one ZOO iteration = {n} x {cost} = {n * cost} images in one call")

    def attack(iterations, chunk=None):
        stats = {}
        zoo(model, x, y, max_iterations=iterations, max_queries=10**9, abort_early=False, query_batch_size=chunk,
            seed=0, stats=stats)
        return int(stats["queries"].sum())

    def per_query(chunk=None):
        t_long, q_long = timed(lambda: attack(long, chunk))
        t_short, q_short = timed(lambda: attack(short, chunk))
        return (t_long - t_short) / (q_long - q_short)

    chunk = FLAGS.query_batch_size or None
    runs = {"zoo (one call per iteration)": lambda: per_query(),
            "predict (default batch 32)": lambda: timed(lambda: model.predict(images, verbose=0))[0] / len(images),
            "predict (one batch)": lambda: timed(lambda: model.predict(images, batch_size=len(images), verbose=0))[0]
            / len(images)}
    if chunk:
        runs[f"zoo (query_batch_size {chunk})"] = lambda: per_query(chunk)
    attack(short), attack(long)  # trace
    if chunk:
        attack(short, chunk), attack(long, chunk)
    model.predict(images, verbose=0), model.predict(images, batch_size=len(images), verbose=0)
    seconds = {name: [] for name in runs}
    for _ in range(reps):
        for name, run in runs.items():
            seconds[name].append(run())
    rate = {name: 1.0 / float(np.median(s)) for name, s in seconds.items()}
    for name, r in rate.items():
        print(f"{name:34s} {r:8.0f} images/s  (per repeat: {', '.join(f'{1 / s:.0f}' for s in seconds[name])})")
    ratio = rate["zoo (one call per iteration)"] / rate["predict (default batch 32)"]
    print(f"ZOO queries/s / predict images/s = {ratio:.2f} (target >= 0.8: {'met' if ratio >= 0.8 else 'NOT met'}); "
          f"vs predict in one batch: {rate['zoo (one call per iteration)'] / rate['predict (one batch)']:.2f}")
    if chunk:
        chunked = rate[f"zoo (query_batch_size {chunk})"] / rate["predict (default batch 32)"]
        print(f"with query_batch_size {chunk}: {chunked:.2f} of predict")

    if FLAGS.success_images:
        pred = np.argmax(model.predict(mnist.x_test[:200], verbose=0), axis=1)
        keep = np.flatnonzero(pred == mnist.y_test[:200])[:FLAGS.success_images]
        xs, ys = mnist.x_test[keep], mnist.y_test[keep]
        stats = {}
        elapsed, adv = timed(lambda: zoo(model, xs, ys, max_queries=FLAGS.max_queries, seed=0, stats=stats))
        fooled = np.argmax(model.predict(adv, verbose=0), axis=1) != ys
        l2 = np.sqrt(((adv - xs) ** 2).reshape(len(xs), -1).sum(axis=1))
        print(f"untargeted ZOO (defaults, budget {FLAGS.max_queries} queries/image) on {len(xs)} correctly classified "
              f"test images: success {fooled.mean():.0%} ({fooled.sum()}/{len(xs)}), mean queries "
              f"{stats['queries'].mean():.0f} (max {stats['queries'].max()}), mean L2 of successes "
              f"{l2[fooled].mean() if fooled.any() else float('nan'):.3f}, time {elapsed:.0f} s "
              f"({elapsed / len(xs):.1f} s/image)")


if __name__ == "__main__":
    app.run(main)
