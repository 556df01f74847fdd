"""Training throughput of a surrogate fleet against the single-model baseline (issue 16 "Performance"; Random
Spiking paper section 5.4).

In one run, on the first ``--train_images`` training images of real MNIST (``--data_dir``; random images if it is
missing) and the first ``--test_images`` test images, each for ``--epochs`` epoch(s):

- a fleet (:class:`hrs_tf.experiments.fleet.Fleet`) of ``--models`` models of the Random Spiking paper's Dropout
  scheme (``rs_dropout``: the RS MNIST CNN, its recipe with the paper's MNIST augmentation) with train fraction
  ``--train_fraction``: training images x epochs / the members' wall seconds (build, fit, checkpoints, test error,
  save, reload);
- the same fleet of ``none`` (each member trained by ``train_base_model``: the baseline's model and recipe, so the
  ratio shows what the fleet machinery and the smaller per-model share cost);
- the baseline: ``hrs_tf.training.train_base_model`` (what ``tools/train_base.py`` runs: the reference MNIST model,
  fit with test-set monitoring, test accuracy), then its save, on all ``--train_images`` images (the fleet's total)
  and on one member's share.

A small untimed training first absorbs TensorFlow's one-time start-up; the four runs are interleaved ``--repeats``
times (the machine is shared) and the median rate of each is printed. On a small run the per-model fixed costs
(building, tracing, test-set evaluation, saving, reloading) weigh on the fleet, whose models see fewer images each.

Prints images/s of each and the fleet / baseline ratios.

    python benchmarks/bench_fleet.py --data_dir=../shared/data --train_images=6000 --models=2 --epochs=1 --repeats=2
"""

import argparse
import dataclasses
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from benchmarks.common import timed  # noqa: E402
from hrs_tf import data, training  # noqa: E402
from hrs_tf.defenses import registry  # noqa: E402
from hrs_tf.experiments.fleet import Fleet  # noqa: E402
from hrs_tf.models import count_params, serialization  # noqa: E402
from randspike import schemes  # noqa: E402

DEFAULT_DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                "shared", "data")


def mnist_subset(data_dir, train_images, test_images):
    """The first images of real MNIST, or random ones of its shape when the data set is missing."""
    try:
        full = data.load_dataset("mnist", data_dir)
    except Exception:  # noqa: BLE001 -- timing only needs images of the right shape
        rng = np.random.default_rng(0)
        x = (rng.random((train_images + test_images, 28, 28, 1)) * 255).astype(np.uint8)
        y = rng.integers(0, 10, train_images + test_images)
        return data.make_dataset("mnist", x[:train_images], y[:train_images], x[train_images:], y[train_images:],
                                 "random images")
    return dataclasses.replace(full, x_train=full.x_train[:train_images], y_train=full.y_train[:train_images],
                               x_test=full.x_test[:test_images], y_test=full.y_test[:test_images])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--train_images", type=int, default=6000)
    parser.add_argument("--test_images", type=int, default=1000)
    parser.add_argument("--models", type=int, default=2)
    parser.add_argument("--train_fraction", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    dataset = mnist_subset(args.data_dir, args.train_images, args.test_images)
    member_images = int(round(args.train_fraction * len(dataset.x_train)))
    dropout = schemes.spec_of("rs_dropout")
    work = tempfile.mkdtemp(prefix="bench_fleet_")
    weights, fit_only = {}, {}

    def fleet_run(spec):
        def run():
            name = f"fleet of {spec.label if isinstance(spec, registry.Spec) else spec}"
            fleet = Fleet(dataset, spec, tempfile.mkdtemp(dir=work), models=args.models, epochs=args.epochs,
                          train_fraction=args.train_fraction, seed=0, log=lambda line: None)
            fleet.train()
            weights[name] = count_params(fleet.model(0))
            return name, fleet.throughput()
        return run

    def baseline_run(images):
        def run():
            name = f"baseline, train_base_model on {images} images"
            subset = dataclasses.replace(dataset, x_train=dataset.x_train[:images], y_train=dataset.y_train[:images])
            seconds, (model, record) = timed(lambda: training.train_base_model(subset, epochs=args.epochs, seed=0,
                                                                               verbose=0))
            seconds += timed(lambda: serialization.save_model(model, os.path.join(work, "base.h5")))[0]
            weights[name] = count_params(model)
            fit_only.setdefault(name, []).append(images * args.epochs / record["train_seconds"])
            return name, images * args.epochs / seconds
        return run

    runs = [fleet_run(dropout), fleet_run("none"), baseline_run(len(dataset.x_train)), baseline_run(member_images)]
    warm = dataclasses.replace(dataset, x_train=dataset.x_train[:256], y_train=dataset.y_train[:256])
    training.train_base_model(warm, epochs=1, seed=0, verbose=0)  # TensorFlow's one-time start-up, not timed
    samples = {}
    try:
        for _ in range(args.repeats):  # interleaved, so that machine load affects every run alike
            for run in runs:
                name, rate = run()
                samples.setdefault(name, []).append(rate)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rates = {name: statistics.median(values) for name, values in samples.items()}
    print(f"training throughput on {dataset.source}: first {len(dataset.x_train)} training / {len(dataset.x_test)} "
          f"test images, {args.epochs} epoch(s); fleets: {args.models} models x {member_images} images (fleet of "
          f"{dropout.label}: rs_dropout, its recipe; fleet of none: train_base_model in each member); median of "
          f"{args.repeats} interleaved runs of whole model-making calls (baselines' fit-only rate in brackets)")
    for name, rate in rates.items():
        extra = f" ({statistics.median(fit_only[name]):.0f} fit only)" if name in fit_only else ""
        print(f"  {name:45s} {weights[name]:7d} weights {rate:7.0f} images/s{extra}")
    baselines = [name for name in rates if name.startswith("baseline")]
    for name in [name for name in rates if name not in baselines]:
        print(f"  {name} / baseline: " + ", ".join(f"{rates[name] / rates[b]:.2f} ({b[len('baseline, '):]})"
                                                    for b in baselines))

if __name__ == "__main__":
    main()
