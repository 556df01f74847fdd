"""Adversarial reprogramming of a frozen target model (HRS paper section 7); rerun the same command to resume.

    python tools/reprogram.py --target_model=runs/base_fashion_mnist.h5 --source_dataset=mnist --epochs=15 \\
        --output=runs/reprog/base.json
    python tools/reprogram.py --target_model=runs/base_fashion_mnist.h5 --target_defense=dropout:0.3 ...

Writes ``--output`` (the JSON record: settings and the per-epoch test accuracy of the reprogrammed model
on the source test set), the trained input transform as a whole model ``<output stem>_transform.h5`` and
the per-epoch checkpoint ``<output stem>_checkpoint.h5`` (kept, so that a rerun with more ``--epochs``
continues the run; a rerun of a finished command trains nothing). The run is one training, so one cell:
``--executor=ray`` trains it as a Ray task (a local Ray instance, or ``--ray_address`` of an existing cluster, e.g. to
run it on a GPU node; see the README), as every experiment driver takes the same flags.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from hrs_tf import cli, data, training  # noqa: E402
from hrs_tf.errors import ConfigError  # noqa: E402
from hrs_tf.experiments.reprogramming.run import Reprogramming  # noqa: E402

flags.DEFINE_string("target_model", None, "The frozen target model (.h5 or .keras) with 10 logits.")
flags.DEFINE_string("target_defense", "none", "Defense spec made from the target without retraining, e.g. none, "
                    "dropout:0.3 (test-time dropout rate after FC1), sap, sap:hrs (--list_defenses).")
flags.DEFINE_string("target_label", None, "The target's name in reports (default: the defense's label, or the model "
                    "file name for none).")
flags.DEFINE_string("source_dataset", "mnist", "The task to reprogram the target to: mnist, fashion_mnist or cifar10.")
flags.DEFINE_string("data_dir", None, f"Folder holding the source data set (else ${data.DATA_DIR_ENV}, the Keras cache, download).")
cli.define_listing_flags("defenses")
flags.DEFINE_integer("epochs", 10, "Reprogramming epochs over the whole source training set (the paper: 50).")
flags.DEFINE_integer("kernel_size", 3, "Kernel of the locally connected input transform (the paper: 2 and 3).")
flags.DEFINE_integer("batch_size", training.REFERENCE_BATCH_SIZE, "Mini-batch size.")
flags.DEFINE_float("learning_rate", training.REFERENCE_LEARNING_RATE, "SGD learning rate.")
flags.DEFINE_integer("seed", 0, "Random seed (transform initialisation, batch order, defense randomness).")
flags.DEFINE_string("output", None, "Output JSON record; the transform and the checkpoint are written beside it.")
cli.define_executor_flags()
flags.mark_flags_as_required(["target_model", "output"])
FLAGS = flags.FLAGS


def main(argv):
    if not FLAGS.output.endswith(".json"):
        raise ConfigError(f"--output={FLAGS.output!r} must end in .json")
    run = Reprogramming(FLAGS.target_model, FLAGS.output, FLAGS.source_dataset, FLAGS.data_dir, FLAGS.target_defense,
                        FLAGS.target_label, FLAGS.epochs, FLAGS.kernel_size, FLAGS.batch_size, FLAGS.learning_rate,
                        FLAGS.seed, log=lambda line: print(line, flush=True))
    executor = cli.executor(FLAGS)
    try:
        record = run.run(executor)
    finally:
        executor.close()
    print(f"reprogramming test accuracy {record['test_accuracy']:.4f} after {FLAGS.epochs} epochs "
          f"(best {record['best_test_accuracy']:.4f}); wrote {FLAGS.output} and {run.transform_path}")


if __name__ == "__main__":
    cli.run(main)
