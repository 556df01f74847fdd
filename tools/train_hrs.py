"""Trains an HRS model bottom-up (HRS paper appendix B); rerun the same command to resume.

    python tools/train_hrs.py --dataset=mnist --channels=5,5 --epochs=40,40 --output_dir=runs/hrs_mnist_5x5
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from hrs_tf import cli, data, hrs, hrs_training, training  # noqa: E402

flags.DEFINE_string("dataset", "cifar10", "Data set: mnist, fashion_mnist or cifar10.")
flags.DEFINE_string("data_dir", None, f"Folder holding the data set (else ${data.DATA_DIR_ENV}, the Keras cache, download).")
flags.DEFINE_string("arch", None, "Base architecture: mnist, cifar10 or rs_mnist (default: the data set's own).")
flags.DEFINE_list("channels", ["10", "10"], "Channels per switching block; 1 to 3 blocks (1: whole models; "
                  "2: convs+FC1 | FC2+logits; 3: convs | FC1 | FC2+logits).")
flags.DEFINE_list("epochs", ["40", "40"], "Training epochs per block (one value per block, or one for all).")
flags.DEFINE_float("dropout_rate", None, "Train-time dropout after FC1 (default: 0.3 MNIST, 0.7 CIFAR-10).")
flags.DEFINE_integer("batch_size", training.REFERENCE_BATCH_SIZE, "Mini-batch size.")
flags.DEFINE_float("learning_rate", training.REFERENCE_LEARNING_RATE, "SGD learning rate.")
flags.DEFINE_integer("seed", 0, "Run seed; each channel trains from a seed derived from it.")
flags.DEFINE_enum("granularity", "batch", ["batch", "sample"],
                  "Switching granularity of the saved model: one path per batch (as published) or per example.")
flags.DEFINE_integer("eval_repeats", 5, "Repeated sample-mode evaluations of the final test accuracy.")
flags.DEFINE_string("reuse_block0_from", None, "A run folder (same settings, fewer or more channels) whose finished "
                    "block-0 channels are copied instead of retrained, e.g. a 5x5 run when training 10x10.")
flags.DEFINE_string("output_dir", None, "Run folder: channel weights, hrs_model.h5, summary.json; reused to resume.")
flags.mark_flag_as_required("output_dir")
FLAGS = flags.FLAGS


def main(argv):
    channels = hrs.parse_channels(FLAGS.channels)
    epochs = hrs_training.parse_epochs(FLAGS.epochs, len(channels))
    training.check_training_settings(min(epochs), FLAGS.batch_size, FLAGS.learning_rate)
    dataset = data.load_dataset(FLAGS.dataset, FLAGS.data_dir)
    print(f"{dataset.name}: {len(dataset.x_train)} train / {len(dataset.x_test)} test images from {dataset.source}")
    hrs_training.train_hrs(
        dataset, FLAGS.output_dir, channels, epochs, arch=FLAGS.arch, batch_size=FLAGS.batch_size,
        learning_rate=FLAGS.learning_rate, seed=FLAGS.seed, dropout_rate=FLAGS.dropout_rate,
        granularity=FLAGS.granularity, eval_repeats=FLAGS.eval_repeats, reuse_block0_from=FLAGS.reuse_block0_from)


if __name__ == "__main__":
    cli.run(main)
