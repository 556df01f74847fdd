"""Table 2 (test error of the nine schemes under each decision rule) and the stability study (section 5.3) of the
Random Spiking paper on one data set, as resumable cells; writes ``docs/rs_schemes_<dataset>.md``.

    python tools/reproduce_rs_schemes.py --dataset=mnist --data_dir=../shared/data --work_dir=runs/rs_schemes_mnist
    python tools/reproduce_rs_schemes.py --dataset=mnist --models=3 --epochs=5 --train_images=20000 ...

k models per scheme (``--models``, paper 16) trained with seeds 0..k-1, each in ``<work_dir>/model_<k>/``; MagNet and
RC use the same seed's Dropout model, the adversarial schemes its RS-1 / Dropout model. Rerunning the same command
continues where it stopped; ``--report_only`` rebuilds the page from finished cells (the cells run model by model,
so a run stopped early is reported with ``--models`` set to the models it finished). Training each model and every
result are cells: ``--executor=ray`` runs them as Ray tasks in parallel (a local Ray instance, or ``--ray_address`` of
an existing cluster; see the README).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from hrs_tf import cli, data  # noqa: E402
from randspike import recipe_flags  # noqa: E402

cli.define_study_flags("Folder of the study's models and cells (resumable).", required=True)
cli.define_data_flags()
flags.DEFINE_list("schemes", None, "Schemes (paper names or specs; default the nine of Table 2).")
flags.DEFINE_integer("models", None, "Models per scheme (paper 16).")
flags.DEFINE_integer("epochs", None, "Training epochs of every trained scheme (paper 50 MNIST CNN).")
flags.DEFINE_integer("magnet_epochs", None, "MagNet autoencoder epochs (paper 100 MNIST, 400 others).")
flags.DEFINE_integer("test_images", None, "Test images of Table 2 (paper 10,000).")
flags.DEFINE_integer("passes", None, "Stochastic passes of MC average / voting (paper 10).")
flags.DEFINE_integer("batch_size", None, "Images evaluated together (the spiking range is the batch's).")
flags.DEFINE_bool("per_image", False, "Give each image its own spiking range instead of its batch's.")
recipe_flags.define("every scheme", "Train every scheme on the first N training images.", optimiser=False)
flags.DEFINE_integer("stability_images", None, "Stability: first N test images (paper 1,000).")
flags.DEFINE_integer("stability_draws", None, "Stability: Gaussian draws per level (paper 20).")
flags.DEFINE_list("gaussian_levels", None, "Stability: L2 levels (default MNIST 0..5, others 0..2.5).")
flags.DEFINE_list("jpeg_qualities", None, "Stability: JPEG qualities (default 10..100 step 10).")
flags.DEFINE_list("experiments", None, "table2, stability (default both).")
FLAGS = flags.FLAGS

PLAN_FLAGS = ("models", "epochs", "magnet_epochs", "test_images", "passes", "batch_size", "stability_images",
              "stability_draws")


def main(argv):
    from hrs_tf import checks
    from randspike import schemes
    from randspike.experiments import report, table2

    overrides = {name: FLAGS[name].value for name in PLAN_FLAGS}
    overrides["per_image"] = FLAGS.per_image
    if FLAGS.schemes:
        overrides["schemes"] = tuple(spec.text for spec in schemes.parse_list(FLAGS.schemes))
    if FLAGS.experiments:
        overrides["experiments"] = tuple(FLAGS.experiments)
    if FLAGS.gaussian_levels:
        overrides["gaussian_levels"] = tuple(checks.nonnegative(v, "gaussian_levels") for v in FLAGS.gaussian_levels)
    if FLAGS.jpeg_qualities:
        overrides["jpeg_qualities"] = tuple(checks.count(v, "jpeg_qualities", minimum=1) for v in FLAGS.jpeg_qualities)
    overrides["settings"] = tuple(recipe_flags.settings(FLAGS, optimiser=False).items())
    plan = table2.plan_for(FLAGS.dataset, **overrides)
    dataset = data.load_dataset(FLAGS.dataset, FLAGS.data_dir)
    study = table2.SchemeStudy(dataset, plan, FLAGS.work_dir, log=lambda line: print(line, flush=True))
    results = study.collect() if FLAGS.report_only else cli.run_cells(study, FLAGS)
    path = report.write_report(study, results, FLAGS.docs_dir, cli.report_command("reproduce_rs_schemes.py"),
                               study.scale_lines())
    print(f"wrote {path}")


if __name__ == "__main__":
    cli.run(main)
