"""Reproduces the HRS paper's evaluation on one data set (resumable) and writes docs/reproduce_hrs_<dataset>.md.

    python tools/reproduce_hrs.py --dataset=mnist --data_dir=../shared/data --work_dir=runs/reproduce_mnist \
        --use_model="Base=runs/base_mnist.h5" --use_model="HRS 5x5=runs/hrs_mnist_5x5"

Trains what it needs (base, Gaussian, adversarial training, HRS 5x5 / 10x10, ablation models) unless given with
--use_model, then computes every result cell it does not have yet; kill it and run it again to continue.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from hrs_tf import cli, data, reproduction  # noqa: E402
from hrs_tf.errors import ConfigError  # noqa: E402

flags.DEFINE_string("dataset", "mnist", "Data set: mnist, fashion_mnist or cifar10.")
flags.DEFINE_string("data_dir", None, "Folder holding the data set.")
flags.DEFINE_string("work_dir", None, "Folder for models and result cells (default runs/reproduce_<dataset>).")
flags.DEFINE_string("docs_dir", "docs", "Where the report and its plots are written.")
flags.DEFINE_multi_string("use_model", [], "NAME=PATH of an already trained model to use, e.g. 'Base=runs/base_mnist.h5' or "
                          "'HRS 5x5=runs/hrs_mnist_5x5' (an HRS run folder).")
flags.DEFINE_list("defenses", None, "Defenses to evaluate (default: all of "
                  f"{', '.join(reproduction.BASELINE_DEFENSES)}, HRS 5x5, HRS 10x10).")
flags.DEFINE_list("experiments", list(reproduction.EXPERIMENTS), "Experiments to run.")
flags.DEFINE_list("hrs_shapes", ["5x5", "10x10"], "HRS models (two blocks each); the DES sweep takes subsets of the largest.")
flags.DEFINE_list("des_sweeps", list(reproduction.DES_SWEEPS), "Strength sweeps of the DES experiment.")
flags.DEFINE_integer("num_images", 50, "First N test images, each attacked toward its 9 wrong classes.")
flags.DEFINE_integer("eot_samples", 10, "Passes averaged per EOT gradient.")
flags.DEFINE_integer("passes", 10, "Fresh stochastic passes scored per adversarial example.")
flags.DEFINE_integer("base_epochs", 40, "Epochs of the base model.")
flags.DEFINE_integer("hrs_epochs", 40, "Epochs per block of the HRS models.")
flags.DEFINE_integer("gaussian_epochs", 40, "Epochs of the Gaussian-noise model.")
flags.DEFINE_integer("sweep_epochs", 20, "Epochs of each Gaussian model of the DES sweep.")
flags.DEFINE_integer("adv_epochs", 20, "Epochs of adversarial training.")
flags.DEFINE_integer("adv_steps", 10, "PGD steps per adversarial-training batch.")
flags.DEFINE_integer("ablation_epochs", 10, "Epochs per block of the 1/2/3-block ablation models.")
flags.DEFINE_string("notes", None, "Optional markdown file put at the top of the report (reading of the results).")
flags.DEFINE_bool("report_only", False, "Only write the report from the cells computed so far.")
FLAGS = flags.FLAGS


def parse_existing(items):
    existing = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--use_model={item!r} must be NAME=PATH")
        name, path = item.split("=", 1)
        known = reproduction.BASELINE_DEFENSES + ("HRS 5x5", "HRS 10x10", "Ablation 1 blocks", "Ablation 2 blocks",
                                                   "Ablation 3 blocks")
        if name not in known:
            raise ConfigError(f"--use_model: unknown model name {name!r}; names: {', '.join(known)}")
        if not os.path.exists(path):
            raise ConfigError(f"--use_model: {path!r} does not exist")
        existing[name] = path
    return existing


def parse_shapes(items):
    shapes = []
    for item in items:
        parts = item.lower().split("x")
        if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise ConfigError(f"--hrs_shapes: {item!r} is not a shape like 5x5")
        shapes.append((int(parts[0]), int(parts[1])))
    return tuple(shapes)


def main(argv):
    existing = parse_existing(FLAGS.use_model)
    dataset = data.load_dataset(FLAGS.dataset, FLAGS.data_dir)
    plan = reproduction.plan_for(
        dataset.name, defenses=tuple(FLAGS.defenses) if FLAGS.defenses else None, experiments=tuple(FLAGS.experiments), num_images=FLAGS.num_images,
        eot_samples=FLAGS.eot_samples, passes=FLAGS.passes, base_epochs=FLAGS.base_epochs, hrs_epochs=FLAGS.hrs_epochs,
        gaussian_epochs=FLAGS.gaussian_epochs, sweep_epochs=FLAGS.sweep_epochs, adv_epochs=FLAGS.adv_epochs,
        adv_steps=FLAGS.adv_steps, ablation_epochs=FLAGS.ablation_epochs, hrs_shapes=parse_shapes(FLAGS.hrs_shapes),
        des_sweeps=tuple(FLAGS.des_sweeps))
    work_dir = FLAGS.work_dir or os.path.join("runs", f"reproduce_{dataset.name}")
    rep = reproduction.Reproduction(dataset, plan, work_dir, existing)
    if not FLAGS.report_only:
        rep.run()
    notes = open(FLAGS.notes).read() if FLAGS.notes else None
    command = "python tools/reproduce_hrs.py " + " ".join(f"'{a}'" if " " in a else a for a in sys.argv[1:])
    rep.report(FLAGS.docs_dir, command, notes)
    print(f"wrote {os.path.join(FLAGS.docs_dir, f'reproduce_hrs_{dataset.name}.md')}")


if __name__ == "__main__":
    cli.run(main)
