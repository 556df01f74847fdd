"""The Ray executor against the local one on the same plan (issue 18 "Performance": <= 0.65x the local wall time with
2 workers on this 2-core machine), and Ray's cost per cell.

In one run:

1. the model: ``--model`` (default ``runs/base_mnist.h5``) as the HRS reproduction's Base, or, when it is missing, a
   Base trained here for one epoch (untimed);
2. a plan of independent attack cells of :class:`hrs_tf.experiments.hrs_paper.Reproduction` on the first
   ``--num_images`` test images (each toward its 9 wrong classes): PGD and CW-PGD (the HRS paper's, 100 Adam steps)
   at each ``--eps`` against Base (white-box) and against defensive dropout 0.3 on it in the four settings
   (white-box, EOT(2), fixed, derandomized) -- 40 short cells with the default four budgets and one image;
3. timed: the local executor (this process, TensorFlow's default threads), then a local Ray instance with
   ``--workers`` workers of ``--threads`` TensorFlow thread(s) each, each into a fresh work folder; the start of Ray
   and of its workers (``ray.init``, then each worker importing TensorFlow and the project) is timed apart: the
   ratio is reported on started workers (a running cluster, ``--ray_address``) and with the start;
4. Ray's cost per cell: ``--noop_cells`` cells that only write their result (:mod:`benchmarks.noop_cells`), wall time
   per cell on the started instance.

Prints the times, the ratio Ray / local (target <= 0.65) and whether the two runs wrote equal results (they need not
at 1 thread per worker: see :mod:`hrs_tf.experiments.execution.ray_cluster`).

    python benchmarks/bench_executor.py --data_dir=../shared/data
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.noop_cells import NoopCells  # noqa: E402
from hrs_tf import data  # noqa: E402
from hrs_tf.experiments import hrs_paper  # noqa: E402
from hrs_tf.experiments.execution import execute  # noqa: E402


def result_files(work):
    """{path: cell JSON without timing fields} of every result cell under ``work``."""
    out = {}
    for root, _, files in os.walk(os.path.join(work, "cells")):
        for file in files:
            cell = json.load(open(os.path.join(root, file)))
            out[os.path.relpath(os.path.join(root, file), work)] = {k: v for k, v in cell.items()
                                                                    if not k.endswith("seconds")}
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default="../shared/data")
    parser.add_argument("--model", default="runs/base_mnist.h5")
    parser.add_argument("--num_images", type=int, default=1)
    parser.add_argument("--eps", default="0.05,0.1,0.2,0.3")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--noop_cells", type=int, default=40)
    parser.add_argument("--verbose", action="store_true", help="print the executors' progress lines")
    args = parser.parse_args()

    dataset = data.load_dataset("mnist", args.data_dir)
    scratch = tempfile.mkdtemp(prefix="bench_executor_")
    quiet = lambda line: None  # noqa: E731
    try:
        eps = tuple(float(e) for e in args.eps.split(","))
        plan = hrs_paper.plan_for("mnist", defenses=("none", "dropout:0.3"), experiments=("attacks",),
                                  epochs=(("none", 1),), num_images=args.num_images, eot_samples=2, passes=2,
                                  eps_grid=eps)
        existing = {"Base": os.path.abspath(args.model)} if os.path.isfile(args.model) else {}
        if not existing:
            print(f"{args.model} is missing: training a Base for 1 epoch (untimed)")
            base_dir = os.path.join(scratch, "base")
            hrs_paper.Reproduction(dataset, plan, base_dir, log=quiet).models.get("Base")
            existing = {"Base": os.path.join(base_dir, "models", "base.h5")}
        print(f"model: {existing['Base']}; plan: {args.num_images} images x 9 targets, eps {eps}")

        local_dir, ray_dir = os.path.join(scratch, "local"), os.path.join(scratch, "ray")
        local = hrs_paper.Reproduction(dataset, plan, local_dir, existing, log=quiet)
        cells = len(local.cell_plan())
        start = time.time()
        local_summary = execute(local, log=print if args.verbose else quiet)
        local_seconds = time.time() - start
        print(f"local executor: {cells} cells in {local_seconds:.1f} s (cells' own times sum to "
              f"{local_summary['cell_seconds']:.1f} s)")

        from hrs_tf.experiments.execution.ray_cluster import RayExecutor

        start = time.time()
        executor = RayExecutor(workers=args.workers, threads=args.threads, log=print)
        executor.wait_until_warm()
        startup = time.time() - start
        try:
            start = time.time()
            ray_summary = execute(hrs_paper.Reproduction(dataset, plan, ray_dir, existing, log=quiet), executor,
                                  log=print if args.verbose else quiet)
            ray_seconds = time.time() - start
            noop_dir = os.path.join(scratch, "noop")
            start = time.time()
            execute(NoopCells(noop_dir, args.noop_cells), executor, log=quiet)
            per_cell = (time.time() - start) / args.noop_cells
        finally:
            executor.close()
        print(f"ray executor ({args.workers} workers x {args.threads} thread(s)): {ray_seconds:.1f} s "
              f"(+ {startup:.1f} s starting Ray and its workers; cells' own times on the workers sum to "
              f"{ray_summary['cell_seconds']:.1f} s)")
        print(f"ratio ray / local: {ray_seconds / local_seconds:.2f} on started workers (a running cluster), "
              f"{(ray_seconds + startup) / local_seconds:.2f} with Ray's and the workers' start (target <= 0.65)")
        print(f"Ray's cost per cell (no-op cells, warm workers): {1000 * per_cell:.0f} ms")
        same = result_files(local_dir) == result_files(ray_dir)
        print(f"result files equal apart from timing fields: {same}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
