"""The adaptive-attack battery (beyond the papers): every given defense attacked alike, robust accuracy beside clean
accuracy, gradient-masking flags; resumable cells; writes ``docs/battery_<dataset>.md``.

    python tools/battery.py --dataset=mnist --data_dir=../shared/data \
        --defense=Standard=rs_standard=runs/rs/standard.h5 --defense=rs1=runs/rs/rs-1.h5 \
        --defense="GI3=gi3=runs/hash/base_hash_mnist.h5" --transfer_from=runs/rs/standard.h5

``--defense=[LABEL=]SPEC=PATH``: PATH is the defense's saved model for a trained or installed defense (e.g. ``hrs``,
``rs1``, ``magnet``, ``hash``) and the trained model it is made from for a wrapped or weight-transform one (``sap``,
``dropout:0.3``, ``bits``, ``median``, ``gi1``..``gi3``, ``region``). Untargeted, the first ``--images`` test images,
L-inf and L2 at the data set's standard radii; per image the worst case over PGD (cross-entropy, margin, sigmoid),
APGD-CE / DLR, one step, EOT and fixed randomness (stochastic defenses), BPDA (layers that declare a surrogate),
Square, and transfer from ``--transfer_from`` (the undefended model). Rerunning the same command continues where it
stopped; ``--executor=ray`` computes the cells as Ray tasks (see the README).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from hrs_tf import cli, data  # noqa: E402

cli.define_data_flags()
flags.DEFINE_multi_string("defense", [], "[LABEL=]SPEC=PATH of a defense to attack (repeat the flag; a LABEL has no =).")
flags.DEFINE_string("transfer_from", None, "The undefended model whose PGD examples are transferred (default: no "
                    "transfer attack).")
cli.define_study_flags("Folder of the result cells (default runs/battery_<dataset>).")
flags.DEFINE_integer("images", None, "First N test images (default 500).")
flags.DEFINE_integer("steps", None, "PGD steps / APGD iterations (default 100).")
flags.DEFINE_integer("restarts", None, "Random restarts of PGD and APGD (default 2).")
flags.DEFINE_integer("square_queries", None, "Square attack query budget (default 5000).")
flags.DEFINE_list("eot_grid", None, "EOT sample counts tried in order until the success stops rising (default "
                  "1,4,16,64).")
flags.DEFINE_integer("bpda_eot", None, "EOT samples of BPDA on a stochastic model (default 8).")
flags.DEFINE_integer("passes", None, "Stochastic passes of a stochastic model's decision (default 10).")
flags.DEFINE_enum("rule", None, ["single", "mc", "vote"], "Decision of a stochastic model (default mc: the mean "
                  "softmax of --passes passes).")
flags.DEFINE_list("threats", None, "linf, l2 (default both).")
flags.DEFINE_float("linf", None, "L-inf radius instead of the data set's standard one (MNIST 0.3, Fashion-MNIST 0.1, "
                   "CIFAR-10 8/255); the report is then named after it, e.g. battery_mnist_linf0.1.md.")
flags.DEFINE_float("l2", None, "L2 radius instead of the data set's standard one (MNIST 2.0, others 0.5).")
flags.DEFINE_float("tolerance", None, "Smallest difference (fraction of the images) a masking check counts "
                   "(default 0.02, at least 2 images).")
flags.DEFINE_integer("seed", None, "Seed of the run (default 0).")
flags.DEFINE_list("attacks", None, "Battery attacks to run (default all): pgd_ce, pgd_margin, pgd_sigmoid, apgd_ce, "
                  "apgd_dlr, one_step, eot, fixed, bpda, square, transfer.")
FLAGS = flags.FLAGS
PLAN_FLAGS = ("images", "steps", "restarts", "square_queries", "eot_grid", "bpda_eot", "passes", "rule", "threats",
              "tolerance", "seed", "linf", "l2")


def main(argv):
    from hrs_tf.errors import ConfigError
    from hrs_tf.evaluation import battery
    from hrs_tf.evaluation.battery.report import write_report

    if FLAGS.transfer_from is not None and not os.path.isfile(FLAGS.transfer_from):
        raise ConfigError(f"--transfer_from={FLAGS.transfer_from!r} is not a file")
    defenses = battery.parse_defenses(FLAGS.defense)
    plan = battery.plan_for(data.canonical_name(FLAGS.dataset), **{name: FLAGS[name].value for name in PLAN_FLAGS})
    dataset = data.load_dataset(FLAGS.dataset, FLAGS.data_dir)
    work_dir = FLAGS.work_dir or os.path.join("runs", f"battery_{plan.name()}")
    run = battery.Battery(dataset, plan, defenses, work_dir, FLAGS.transfer_from, FLAGS.attacks,
                          log=lambda line: print(line, flush=True))
    cli.run_cells(run, FLAGS)
    print(f"wrote {write_report(run, FLAGS.docs_dir, cli.report_command('battery.py'))}")


if __name__ == "__main__":
    cli.run(main)
