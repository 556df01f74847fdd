"""Trains an unprotected base model with the reference recipe and saves it as .h5 + JSON sidecar.

    python tools/train_base.py --dataset=mnist --epochs=20 --output=runs/base_mnist.h5
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from hrs_tf import cli, data, fileio, serialization, training  # noqa: E402
from hrs_tf.errors import ConfigError  # noqa: E402

flags.DEFINE_string("dataset", "mnist", "Data set: mnist, fashion_mnist or cifar10.")
flags.DEFINE_string("data_dir", None, f"Folder holding the data set (else ${data.DATA_DIR_ENV}, the Keras cache, download).")
flags.DEFINE_string("arch", None, "Architecture: mnist, cifar10 or rs_mnist (default: the data set's own).")
flags.DEFINE_float("dropout_rate", None, "Train-time dropout after FC1 (default: 0.3 MNIST, 0.7 CIFAR-10).")
flags.DEFINE_integer("epochs", 40, "Training epochs (the reference uses 40).")
flags.DEFINE_integer("batch_size", training.REFERENCE_BATCH_SIZE, "Mini-batch size.")
flags.DEFINE_float("learning_rate", training.REFERENCE_LEARNING_RATE, "SGD learning rate.")
flags.DEFINE_integer("seed", 0, "Random seed (weights, shuffling, dropout).")
flags.DEFINE_string("output", None, "Output model path (.h5); a JSON sidecar is written beside it.")
flags.mark_flag_as_required("output")
FLAGS = flags.FLAGS


def main(argv):
    if not FLAGS.output.endswith(".h5"):
        raise ConfigError(f"--output={FLAGS.output!r} must end in .h5")
    training.check_training_settings(FLAGS.epochs, FLAGS.batch_size, FLAGS.learning_rate)
    dataset = data.load_dataset(FLAGS.dataset, FLAGS.data_dir)
    print(f"{dataset.name}: {len(dataset.x_train)} train / {len(dataset.x_test)} test images from {dataset.source}")
    model, record = training.train_base_model(
        dataset, arch=FLAGS.arch, epochs=FLAGS.epochs, batch_size=FLAGS.batch_size,
        learning_rate=FLAGS.learning_rate, seed=FLAGS.seed, dropout_rate=FLAGS.dropout_rate)
    serialization.save_model(model, FLAGS.output)
    sidecar = os.path.splitext(FLAGS.output)[0] + ".json"
    record["output"] = FLAGS.output
    fileio.write_json(sidecar, record)
    print(f"test accuracy {record['test_accuracy']:.4f}; wrote {FLAGS.output} and {sidecar}")


if __name__ == "__main__":
    cli.run(main)
