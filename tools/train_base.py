"""Trains an unprotected base model with the reference recipe and saves it as .h5 + JSON sidecar.

    python tools/train_base.py --dataset=mnist --epochs=20 --output=runs/base_mnist.h5

After every epoch ``<output>.checkpoint.h5`` (weights, optimizer state, epoch, history, settings) is written
atomically; the same command run again after a kill resumes at the next epoch and refuses other settings.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from hrs_tf import cli, data, fileio, training  # noqa: E402
from hrs_tf.models import serialization  # noqa: E402
from hrs_tf.training import fine_tuning  # noqa: E402

cli.define_data_flags()
cli.define_training_flags("Training epochs (the reference uses 40).")
cli.define_model_output_flag("Output model path (.h5); sidecar JSON and checkpoint beside it.")
FLAGS = flags.FLAGS


def main(argv):
    cli.model_output(FLAGS.output)
    epochs = cli.parse_epochs(FLAGS.epochs, default=40)
    training.check_training_settings(epochs, FLAGS.batch_size, FLAGS.learning_rate)
    dataset = data.load_dataset(FLAGS.dataset, FLAGS.data_dir)
    print(f"{dataset.name}: {len(dataset.x_train)} train / {len(dataset.x_test)} test images from {dataset.source}")
    model, record = training.train_base_model(
        dataset, epochs=epochs, seed=FLAGS.seed, checkpoint=fine_tuning.checkpoint_path(FLAGS.output),
        log=lambda line: print(line, flush=True), **cli.training_settings(FLAGS))
    serialization.save_model(model, FLAGS.output)
    sidecar = os.path.splitext(FLAGS.output)[0] + ".json"
    record["output"] = FLAGS.output
    fileio.write_json(sidecar, record)
    print(f"test accuracy {record['test_accuracy']:.4f}; wrote {FLAGS.output} and {sidecar}")


if __name__ == "__main__":
    cli.run(main)
