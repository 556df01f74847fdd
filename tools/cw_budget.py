"""Runs Table 4's single-model C&W of the translucent-box protocol (random targets, confidence K, 8-bit rounding) at
the reproduction pages' cheap budget and at the Random Spiking paper's, on the same images and targets, and writes
Table 4's figures for both as JSON: how much of a page's L2 is the budget (a check beyond the paper).

    python tools/cw_budget.py --model=runs/fleets/standard_mnist/model_0/models/standard.h5 --dataset=mnist \
        --data_dir=../shared/data --images=50 --output=runs/cw_budget_mnist.json

Budgets (randspike.translucent.budget): ``pages`` 100 iterations x 4 search steps, Adam 0.1, c from 0.1;
``paper`` 1000 x 9, Adam 0.01, c from 1e-3. A stochastic model is attacked with ``--eot`` passes per step and judged
by the MC average of 10 passes.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from hrs_tf import cli, data, fileio  # noqa: E402
from hrs_tf.errors import ConfigError  # noqa: E402

flags.DEFINE_string("model", None, "Keras model file (.h5) of one fleet member (logits output, [0, 1] inputs).")
flags.mark_flag_as_required("model")
cli.define_data_flags()
flags.DEFINE_integer("images", 50, "Attack the first N test images (the pages: 50).")
flags.DEFINE_float("confidence", 0.0, "C&W confidence K (Table 4: 0).")
flags.DEFINE_integer("eot", 1, "Passes per C&W step on a stochastic model.")
flags.DEFINE_integer("seed", 0, "Seed of the random targets (the studies' default 0).")
flags.DEFINE_list("budgets", ["pages", "paper"], "Budgets to run, in order: pages, paper.")
flags.DEFINE_string("output", None, "Output JSON path.")
flags.mark_flag_as_required("output")
FLAGS = flags.FLAGS


def main(argv):
    from hrs_tf import checks, training
    from randspike.translucent import budget

    for name in FLAGS.budgets:
        checks.choice(name, "budget", tuple(budget.BUDGETS))
    checks.count(FLAGS.images, "images", minimum=1)
    dataset = data.load_dataset(FLAGS.dataset, FLAGS.data_dir)
    if FLAGS.images > len(dataset.x_test):
        raise ConfigError(f"images={FLAGS.images} exceeds the {len(dataset.x_test)} test images")
    model = cli.load_model(FLAGS.model, dataset=dataset)
    x, y = dataset.x_test[:FLAGS.images], dataset.y_test[:FLAGS.images]
    rows = budget.compare(model, x, y, dataset.num_classes, {name: budget.BUDGETS[name] for name in FLAGS.budgets},
                          confidence=FLAGS.confidence, seed=FLAGS.seed, eot=FLAGS.eot,
                          progress=lambda name, row: print(f"{name}: {row}", flush=True))
    fileio.write_json(FLAGS.output, {"model": FLAGS.model, "dataset": dataset.name, "images": FLAGS.images,
                                     "confidence": FLAGS.confidence, "seed": FLAGS.seed, "budgets": rows,
                                     "command": cli.report_command("cw_budget.py"),
                                     "versions": training.versions()})
    print(f"wrote {FLAGS.output}")


if __name__ == "__main__":
    cli.run(main)
