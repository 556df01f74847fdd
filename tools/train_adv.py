"""Madry PGD adversarial training; rerun the same command to resume after an interruption.

    python tools/train_adv.py --dataset=mnist --eps=0.3 --pgd_steps=40 --pgd_step_size=0.01 --epochs=40 --output=runs/adv_mnist.h5
    python tools/train_adv.py --dataset=cifar10 --eps=2/255 --pgd_steps=7 --pgd_step_size=0.5/255 --epochs=40 --output=runs/adv_cifar.h5

Every mini-batch is replaced by PGD examples crafted on the current model (random start; ``--adv_fraction``
below 1 mixes adversarial and clean examples). After every epoch ``<output>.checkpoint.npz`` (weights,
optimizer state, epoch, history, settings) is written atomically; a rerun resumes at the next epoch and
refuses other settings. At the end: the model (.h5) and a JSON sidecar with the history, the clean test
accuracy and the PGD accuracy on the first ``--eval_images`` test images.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from hrs_tf import adversarial_training, baselines, cli, data, training  # noqa: E402
from hrs_tf.errors import ConfigError  # noqa: E402

flags.DEFINE_string("dataset", "mnist", "Data set: mnist, fashion_mnist or cifar10.")
flags.DEFINE_string("data_dir", None, f"Folder holding the data set (else ${data.DATA_DIR_ENV}, the Keras cache, download).")
flags.DEFINE_string("arch", None, "Architecture: mnist, cifar10 or rs_mnist (default: the data set's own).")
flags.DEFINE_float("dropout_rate", None, "Train-time dropout after FC1 (default: 0.3 MNIST, 0.7 CIFAR-10).")
flags.DEFINE_string("eps", None, "L-inf training bound in [0, 1], e.g. 0.3 or 2/255.")
flags.DEFINE_integer("pgd_steps", 40, "PGD steps per training batch (Madry: 40 MNIST, 7 CIFAR-10).")
flags.DEFINE_string("pgd_step_size", None, "PGD step size (default 4/3 eps / pgd_steps: Madry's 0.01 at eps 0.3, 40 steps); fractions accepted.")
flags.DEFINE_float("adv_fraction", 1.0, "Fraction of each batch replaced by PGD examples (Madry: 1).")
flags.DEFINE_bool("random_start", True, "Uniform random start in the eps-ball.")
flags.DEFINE_integer("epochs", 40, "Training epochs (a rerun with more epochs continues).")
flags.DEFINE_integer("batch_size", training.REFERENCE_BATCH_SIZE, "Mini-batch size.")
flags.DEFINE_float("learning_rate", training.REFERENCE_LEARNING_RATE, "SGD learning rate.")
flags.DEFINE_integer("seed", 0, "Random seed (weights, shuffling, random starts, dropout).")
flags.DEFINE_integer("eval_images", 500, "Test images for the final PGD accuracy (0: skip).")
flags.DEFINE_string("output", None, "Output model path (.h5); sidecar JSON and checkpoint beside it.")
flags.mark_flags_as_required(["eps", "output"])
FLAGS = flags.FLAGS


def main(argv):
    if not FLAGS.output.endswith(".h5"):
        raise ConfigError(f"--output={FLAGS.output!r} must end in .h5")
    eps = cli.parse_fraction(FLAGS.eps, "eps")
    step_size = None if FLAGS.pgd_step_size is None else cli.parse_fraction(FLAGS.pgd_step_size, "pgd_step_size")
    adversarial_training.check_settings(eps, FLAGS.pgd_steps, step_size, FLAGS.adv_fraction)
    training.check_training_settings(FLAGS.epochs, FLAGS.batch_size, FLAGS.learning_rate)
    dataset = data.load_dataset(FLAGS.dataset, FLAGS.data_dir)
    print(f"{dataset.name}: {len(dataset.x_train)} train / {len(dataset.x_test)} test images from {dataset.source}",
          flush=True)
    model, record = adversarial_training.train_adversarial(
        dataset, adversarial_training.checkpoint_path(FLAGS.output), eps, FLAGS.epochs, pgd_steps=FLAGS.pgd_steps,
        pgd_step_size=step_size, adv_fraction=FLAGS.adv_fraction, random_start=FLAGS.random_start, arch=FLAGS.arch,
        dropout_rate=FLAGS.dropout_rate, batch_size=FLAGS.batch_size, learning_rate=FLAGS.learning_rate,
        seed=FLAGS.seed, eval_images=FLAGS.eval_images, log=lambda line: print(line, flush=True))
    record["command_line"] = {name: FLAGS[name].value for name in FLAGS if FLAGS[name].present}
    sidecar = baselines.write_model(model, record, FLAGS.output)
    print(f"clean test accuracy {record['test_accuracy']:.4f}; wrote {FLAGS.output} and {sidecar}")


if __name__ == "__main__":
    cli.run(main)
