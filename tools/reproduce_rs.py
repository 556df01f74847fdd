"""The translucent-box evaluation of the Random Spiking paper on one data set (Tables 4-5, Figures 3-4) as resumable
cells; writes ``docs/reproduce_rs_<dataset>.md``.

    python tools/reproduce_rs.py --dataset=mnist --data_dir=../shared/data --work_dir=runs/reproduce_rs_mnist
    python tools/reproduce_rs.py --dataset=mnist --schemes=Standard,Dropout,RS-1,RS-1-Dropout --epochs=2 \\
        --images=100 --cw_iterations=100 --cw_search_steps=5 --work_dir=runs/reproduce_rs_mnist_small

Per scheme a fleet of ``--models`` surrogates (paper 16; seeds and random halves of the training data, as
``tools/train_fleet.py`` trains them) in ``<work_dir>/fleets/``; C&W against ``--sources`` at once (paper 8) and
against each of ``--single_sources`` alone (paper 4); validation at ``--threshold`` of the held-out models minus one
(paper 5 of 7). Without flags every setting is the paper's (the full run takes many CPU-days). Rerunning the same
command continues where it stopped; ``--report_only`` rebuilds the page from finished cells. Each fleet member's
training, each attack (generate) and each judgement is a cell: ``--executor=ray`` runs them as Ray tasks in parallel
(a local Ray instance, or ``--ray_address`` of an existing cluster; see the README), each cell after the models it
uses.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from hrs_tf import cli, data  # noqa: E402
from randspike import recipe_flags  # noqa: E402

cli.define_study_flags("Folder of the study's fleets, examples and cells (resumable).", required=True)
cli.define_data_flags()
flags.DEFINE_list("schemes", None, "Schemes (paper names or defense specs; default the nine of Table 2).")
flags.DEFINE_integer("models", None, "Fleet size per scheme (paper 16).")
flags.DEFINE_integer("sources", None, "Models attacked at once by Multi-t (paper 8).")
flags.DEFINE_integer("single_sources", None, "Models attacked one by one by Single (paper 4).")
flags.DEFINE_integer("threshold", None, "Validation models an example must fool (paper 5 of 7).")
flags.DEFINE_integer("epochs", None, "Training epochs of every fleet model (paper 50 MNIST CNN, 200 WRN).")
flags.DEFINE_integer("magnet_epochs", None, "MagNet autoencoder epochs (paper 100 MNIST, 400 others).")
flags.DEFINE_float("train_fraction", None, "Fraction of the training images per fleet model (paper 0.5).")
recipe_flags.define("every scheme", "Draw each model's training subset from the first N training images.")
flags.DEFINE_integer("images", None, "First test images attacked (default 1,000).")
flags.DEFINE_list("confidences", None, "C&W confidences K (default MNIST 0,5,10,15; Fashion-MNIST 0,10,20,30; "
                  "CIFAR-10 0,20,40,60).")
flags.DEFINE_integer("cw_iterations", None, "C&W iterations per constant (paper 1000).")
flags.DEFINE_integer("cw_search_steps", None, "C&W binary-search steps (paper 9).")
flags.DEFINE_float("cw_learning_rate", None, "C&W Adam step (paper 0.01).")
flags.DEFINE_float("cw_initial_const", None, "C&W initial constant (paper 0.001).")
flags.DEFINE_integer("eot", None, "Stochastic passes per C&W step on stochastic surrogates (default 4).")
flags.DEFINE_integer("attack_batch", None, "Images per C&W call and per cell (default 100).")
flags.DEFINE_integer("passes", None, "MC average / voting passes of the targets (paper 10).")
flags.DEFINE_list("l2_edges", None, "L2 bucket edges (default four equal buckets up to Table 3's cut-off).")
flags.DEFINE_integer("seed", None, "Seed of the fleets and of the targets' draw (default 0).")
FLAGS = flags.FLAGS

PLAN_FLAGS = ("models", "sources", "single_sources", "threshold", "epochs", "magnet_epochs", "train_fraction", "images",
              "cw_iterations", "cw_search_steps", "cw_learning_rate", "cw_initial_const", "eot", "attack_batch",
              "passes", "seed")


def main(argv):
    from hrs_tf import checks
    from randspike import schemes
    from randspike.translucent import report, study

    overrides = {name: FLAGS[name].value for name in PLAN_FLAGS}
    if FLAGS.schemes:
        overrides["schemes"] = tuple(spec.text for spec in schemes.parse_list(FLAGS.schemes))
    if FLAGS.confidences:
        overrides["confidences"] = tuple(checks.nonnegative(v, "confidences") for v in FLAGS.confidences)
    if FLAGS.l2_edges:
        overrides["edges"] = tuple(checks.nonnegative(v, "l2_edges") for v in FLAGS.l2_edges)
    overrides["settings"] = tuple(recipe_flags.settings(FLAGS).items())
    plan = study.plan_for(FLAGS.dataset, **overrides)
    executor = None if FLAGS.report_only else cli.executor(FLAGS)
    try:
        dataset = data.load_dataset(FLAGS.dataset, FLAGS.data_dir)
        evaluation = study.TranslucentStudy(dataset, plan, FLAGS.work_dir, log=lambda line: print(line, flush=True))
        results = evaluation.collect() if executor is None else evaluation.run(executor=executor)
    finally:
        if executor is not None:
            executor.close()
    path = report.write_report(evaluation, results, FLAGS.docs_dir, cli.report_command("reproduce_rs.py"),
                               report.fleet_lines(evaluation))
    print(f"wrote {path}")


if __name__ == "__main__":
    cli.run(main)
