"""Trains an HRS model bottom-up (HRS paper appendix B); rerun the same command to resume.

    python tools/train_hrs.py --dataset=mnist --channels=5,5 --epochs=40,40 --output_dir=runs/hrs_mnist_5x5
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from hrs_tf import cli, data, training  # noqa: E402
from hrs_tf.defenses import hrs  # noqa: E402

cli.define_data_flags(dataset="cifar10")
cli.define_training_flags("Training epochs per block (one value per block, or one for all; default 40).")
flags.DEFINE_list("channels", ["10", "10"], "Channels per switching block; 1 to 3 blocks (1: whole models; "
                  "2: convs+FC1 | FC2+logits; 3: convs | FC1 | FC2+logits).")
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
    epochs = hrs.training.parse_epochs(FLAGS.epochs or [40], len(channels))
    training.check_training_settings(min(epochs), FLAGS.batch_size, FLAGS.learning_rate)
    dataset = data.load_dataset(FLAGS.dataset, FLAGS.data_dir)
    print(f"{dataset.name}: {len(dataset.x_train)} train / {len(dataset.x_test)} test images from {dataset.source}")
    hrs.training.train_hrs(
        dataset, FLAGS.output_dir, channels, epochs, seed=FLAGS.seed, granularity=FLAGS.granularity,
        eval_repeats=FLAGS.eval_repeats, reuse_block0_from=FLAGS.reuse_block0_from, **cli.training_settings(FLAGS))


if __name__ == "__main__":
    cli.run(main)
