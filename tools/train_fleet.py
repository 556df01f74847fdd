"""Trains a surrogate fleet: n models of one scheme that differ only in seed and in a random half of the training data
(Random Spiking paper section 5.4), resumable model by model, in one folder with a manifest (``fleet.json``).

    python tools/train_fleet.py --scheme=RS-1 --dataset=mnist --data_dir=../shared/data --work_dir=runs/fleets/rs1_mnist
    python tools/train_fleet.py --scheme=Dropout --models=4 --epochs=5 --train_images=20000 --work_dir=runs/fleets/dropout
    python tools/train_fleet.py --scheme=MagNet --epochs=20 --source_epochs=5 --only=0,1 --work_dir=runs/fleets/magnet

Schemes by their paper names (Standard, Dropout, RS-1, MagNet, RC, ...) or as any defense spec (``rs1:0.7``,
``none``, ``hrs:5x5``). Member k lives in ``<work_dir>/model_<k>/`` (seed and training indices derived from --seed
and k, recorded in the manifest by their hash); a wrapped or installed scheme (RC, MagNet) has its source model
trained in each member's folder, or taken from ``--source_fleet``, a fleet of that source made with the same
settings (member k's source is its member k: not trained twice). Rerunning the same command trains only what is
missing; a larger --models extends the fleet; other settings in the same --work_dir are refused.
``--train_images=N``: members draw from the first N. Each member is a cell of its own: ``--executor=ray`` trains
members at once as Ray tasks (a local Ray instance, or ``--ray_address`` of an existing cluster; see the README).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from hrs_tf import cli, data  # noqa: E402
from randspike import recipe_flags  # noqa: E402

flags.DEFINE_string("scheme", None, "Scheme: a Random Spiking paper name (RS-1, Dropout, MagNet, ...) or a defense spec.")
flags.mark_flag_as_required("scheme")
cli.define_data_flags()
flags.DEFINE_integer("models", 16, "Models in the fleet (paper 16); a larger number later extends the fleet.")
flags.DEFINE_list("epochs", None, "Training epochs of the scheme's model (default: its defense's; one per block for "
                  "HRS); for a wrapped scheme (RC), the default of --source_epochs.")
flags.DEFINE_integer("source_epochs", None, "Epochs of the source model of a wrapped / installed scheme (MagNet, RC: "
                     "the Dropout model; default --epochs, else its defense's).")
flags.DEFINE_float("train_fraction", 0.5, "Share of the training set each model trains on (paper 0.5).")
flags.DEFINE_integer("seed", 0, "Fleet seed: member k's training seed and images derive from (seed, k).")
flags.DEFINE_string("work_dir", None, "Folder of the fleet (model_<k>/ folders and fleet.json), resumable.")
flags.mark_flag_as_required("work_dir")
recipe_flags.define("every fleet model", "Members draw their share from the first N training images (a quick run).",
                    any_arch=True)
flags.DEFINE_string("source_fleet", None, "Folder of a fleet of the scheme's source (the Dropout model of RC / MagNet) "
                    "made with the same settings: member k's source is its member k (made there if missing).")
flags.DEFINE_list("only", None, "Make only these members (indices, e.g. 0,1), the others later.")
cli.define_executor_flags()
FLAGS = flags.FLAGS


def main(argv):
    from hrs_tf import checks
    from hrs_tf.experiments import fleet

    checks.count(FLAGS.models, "models", minimum=1)
    fleet.check_fraction(FLAGS.train_fraction)
    checks.count(FLAGS.seed, "seed")
    only = None if FLAGS.only is None else [checks.count(k, "only") for k in FLAGS.only]
    epochs = fleet.check_epochs(cli.parse_epochs(FLAGS.epochs))
    from randspike import schemes

    spec = schemes.spec_of(FLAGS.scheme)
    settings = recipe_flags.settings(FLAGS)
    executor = cli.executor(FLAGS)
    try:
        dataset = data.load_dataset(FLAGS.dataset, FLAGS.data_dir)
        surrogates = fleet.Fleet(dataset, spec, FLAGS.work_dir, models=FLAGS.models, epochs=epochs,
                                 source_epochs=FLAGS.source_epochs, train_fraction=FLAGS.train_fraction,
                                 seed=FLAGS.seed, settings=settings, log=lambda line: print(line, flush=True),
                                 source_fleet=FLAGS.source_fleet)
        finished = surrogates.train(only, executor=executor)
    finally:
        executor.close()
    rate = surrogates.throughput()
    print(f"{len(finished)} of {surrogates.models} model(s) of {spec.label} made; manifest {surrogates.manifest_path}")
    print("training throughput: " + ("no model trained yet" if rate is None else f"{rate:.0f} images/s"))


if __name__ == "__main__":
    cli.run(main)
