"""Reproduces the HRS paper's evaluation on one data set (resumable) and writes docs/reproduce_hrs_<dataset>.md.

    python tools/reproduce_hrs.py --dataset=mnist --data_dir=../shared/data --work_dir=runs/reproduce_mnist \
        --use_model="Base=runs/base_mnist.h5" --use_model="HRS 5x5=runs/hrs_mnist_5x5"

Defenses are registry specs (``--list_defenses``); by default the paper's: none, sap, sap:hrs, dropout:0.1,
dropout:0.3, gaussian, adv:steps=10, hrs:5x5, hrs:10x10. Models are named by their spec's label (``Base``,
``HRS 5x5``, ...; ``Ablation k blocks`` for the block-count ablation); ``--use_model=NAME=PATH`` gives one
trained elsewhere. The command trains what it needs, then computes every result cell it does not have yet;
kill it and run it again to continue. ``--executor=ray`` runs the cells as Ray tasks in parallel (a local Ray
instance, or ``--ray_address`` of an existing cluster; see the README).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from hrs_tf import checks, cli, data  # noqa: E402
from hrs_tf.errors import ConfigError  # noqa: E402
from hrs_tf.experiments import hrs_paper  # noqa: E402

cli.define_data_flags()
cli.define_study_flags("Folder for models and result cells (default runs/reproduce_<dataset>).")
flags.DEFINE_multi_string("use_model", [], "NAME=PATH of an already trained model to use, e.g. 'Base=runs/base_mnist.h5' "
                          "or 'HRS 5x5=runs/hrs_mnist_5x5' (an HRS run folder); NAME is the model's name in the report.")
flags.DEFINE_list("defenses", None, "Defense specs to evaluate, comma-separated (default: the paper's, see above); "
                  "commas inside a spec are fine: none,gaussian:0.2,0.1,hrs:5x5.")
flags.DEFINE_list("experiments", list(hrs_paper.EXPERIMENTS), "Experiments to run.")
flags.DEFINE_list("des_sweeps", None, "Defenses whose strength sweep the DES experiment runs (default: every evaluated "
                  "defense that has one, e.g. dropout,gaussian,hrs).")
flags.DEFINE_list("epochs", [], "Training epochs per defense, NAME:EPOCHS (e.g. none:10,hrs:10,gaussian:10); "
                  "default: each defense's reference value.")
flags.DEFINE_integer("num_images", 50, "First N test images, each attacked toward its 9 wrong classes.")
flags.DEFINE_integer("eot_samples", 10, "Passes averaged per EOT gradient.")
flags.DEFINE_integer("passes", 10, "Fresh stochastic passes scored per adversarial example.")
flags.DEFINE_integer("sweep_epochs", 20, "Epochs of each trained model of the DES sweeps (e.g. Gaussian sigmas).")
flags.DEFINE_integer("ablation_epochs", 10, "Epochs per block of the 1/2/3-block ablation models.")
flags.DEFINE_string("notes", None, "Optional markdown file put at the top of the report (reading of the results).")
flags.DEFINE_bool("redraw_from_page", False, "Only redraw the ASR, FGSM / C&W and DES figures of the page "
                  "<docs_dir>/reproduce_hrs_<dataset>.md from the numbers it prints (a committed page whose cells are "
                  "gone); nothing is computed and the page is not changed.")
cli.define_listing_flags("defenses")
FLAGS = flags.FLAGS


def parse_epochs(items):
    epochs = []
    for item in items:
        name, sep, value = item.partition(":")
        if not sep:
            raise ConfigError(f"--epochs={item!r} must be NAME:EPOCHS, e.g. hrs:10")
        epochs.append((name.strip(), checks.count(value, f"epochs of {name}", minimum=1)))
    return tuple(epochs)


def main(argv):
    if FLAGS.redraw_from_page:
        from hrs_tf.experiments.hrs_paper import page_figures

        page = os.path.join(FLAGS.docs_dir, f"reproduce_hrs_{FLAGS.dataset}.md")
        for path in page_figures.redraw_figures(page, FLAGS.docs_dir):
            print(f"redrew {os.path.join(FLAGS.docs_dir, path)}")
        return
    executor = None if FLAGS.report_only else cli.executor(FLAGS)  # a bad executor flag stops before any work
    try:
        reproduce(executor)
    finally:
        if executor is not None:
            executor.close()


def reproduce(executor):
    from hrs_tf import defenses

    existing = cli.parse_named_paths(FLAGS.use_model, "use_model")
    specs = tuple(spec.text for spec in defenses.parse_list(FLAGS.defenses)) if FLAGS.defenses else None
    epochs = parse_epochs(FLAGS.epochs)
    dataset = data.load_dataset(FLAGS.dataset, FLAGS.data_dir)
    plan = hrs_paper.plan_for(
        dataset.name, defenses=specs, experiments=tuple(FLAGS.experiments),
        num_images=FLAGS.num_images, eot_samples=FLAGS.eot_samples, passes=FLAGS.passes,
        epochs=epochs, sweep_epochs=FLAGS.sweep_epochs, ablation_epochs=FLAGS.ablation_epochs,
        des_sweeps=tuple(FLAGS.des_sweeps) if FLAGS.des_sweeps else None)
    work_dir = FLAGS.work_dir or os.path.join("runs", f"reproduce_{dataset.name}")
    rep = hrs_paper.Reproduction(dataset, plan, work_dir, existing)
    if executor is not None:
        rep.run(executor=executor)
    notes = open(FLAGS.notes).read() if FLAGS.notes else None
    command = "python tools/reproduce_hrs.py " + " ".join(f"'{a}'" if " " in a else a for a in sys.argv[1:])
    rep.report(FLAGS.docs_dir, command, notes)
    print(f"wrote {os.path.join(FLAGS.docs_dir, f'reproduce_hrs_{dataset.name}.md')}")

if __name__ == "__main__":
    cli.run(main)
