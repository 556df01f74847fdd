"""Throughput of region-based classification (issue 15 "Performance"; Random Spiking paper appendix A.1).

Times, in one run and interleaved, the classification of ``--images`` images with ``--copies`` noisy copies each:

- ``RegionClassifier.counts``: noise drawn, copies classified ``--chunk`` at a time and votes counted, all inside one
  ``tf.function`` (what the defense runs);
- the reference: ``model.predict`` (batch ``--chunk``) on the same number of noisy copies made beforehand in numpy
  (their making is not timed), argmax and counting not timed either.

The classifier is the RS paper's MNIST model with the Dropout scheme's DefensiveDropout(0.5) after FC1 (untrained
weights: throughput does not depend on them). Prints copies per second of each and the ratio. Target: region
throughput >= 70% of predict's.

    python benchmarks/bench_region.py --images=4 --copies=2000 --chunk=1000 --repeats=5
"""

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import timed  # noqa: E402
from randspike import architectures, region  # noqa: E402

TARGET = 0.70


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--copies", type=int, default=2000)
    parser.add_argument("--chunk", type=int, default=region.CHUNK)
    parser.add_argument("--radius", type=float, default=0.4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    classifier = architectures.build_rs_mnist(dropout=True, seed=0)
    rng = np.random.default_rng(0)
    x = rng.random((args.images, 28, 28, 1), dtype=np.float32)
    rc = region.RegionClassifier(classifier, args.radius, args.copies, chunk=args.chunk, seed=1)
    copies = np.repeat(x, args.copies, axis=0)
    copies = np.clip(copies + rng.uniform(-args.radius, args.radius, copies.shape).astype(np.float32), 0.0, 1.0)
    total = len(copies)

    runs = {
        "region (tf.function)": lambda: rc.counts(x, batch_size=args.images),
        "predict on pre-made copies": lambda: classifier.predict(copies, batch_size=args.chunk, verbose=0),
    }
    for run in runs.values():  # trace and warm up
        run()
    times = {name: [] for name in runs}
    for _ in range(args.repeats):  # interleaved, so that machine load affects both alike
        for name, run in runs.items():
            times[name].append(timed(run)[0])
    print(f"region-based classification: {args.images} images x {args.copies} copies = {total} forward passes, "
          f"chunk / predict batch {args.chunk}, RS MNIST model with dropout 0.5 after FC1 "
          f"({classifier.count_params()} weights); median of {args.repeats} (interleaved)")
    rates = {name: total / statistics.median(samples) for name, samples in times.items()}
    for name, rate in rates.items():
        print(f"  {name:28s} {statistics.median(times[name]):7.3f} s   {rate:9.0f} copies/s")
    ratio = rates["region (tf.function)"] / rates["predict on pre-made copies"]
    print(f"  region throughput / predict throughput = {ratio:.2f} (target >= {TARGET:.2f}: "
          f"{'met' if ratio >= TARGET else 'NOT met'})")


if __name__ == "__main__":
    main()
