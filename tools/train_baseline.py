"""Trains a baseline defense (or wraps a trained model in one) and saves it as .h5 + JSON sidecar.

    python tools/train_baseline.py --defense=dropout --dropout_rate=0.7 --dataset=mnist --epochs=40 --output=runs/dropout0.7_mnist.h5
    python tools/train_baseline.py --defense=gaussian --init_std=0.2 --inner_std=0.1 --dataset=mnist --output=runs/gaussian_mnist.h5
    python tools/train_baseline.py --defense=sap --sap_variant=exact --base_model=runs/base_mnist.h5 --output=runs/sap_mnist.h5
    python tools/train_baseline.py --defense=dropout --test_rate=0.3 --base_model=runs/base_mnist.h5 --output=runs/dd0.3_mnist.h5

``dropout`` trains with dropout ``--dropout_rate`` after FC1; with ``--test_rate`` the saved model keeps dropout
on at test time (DefensiveDropout), otherwise it is the plain trained model (the defensive-dropout search
wraps it itself). ``gaussian`` trains with noise on (defaults: HRS appendix C.2 for the data set). ``sap`` and
``dropout`` with ``--base_model`` wrap a trained model without retraining. The sidecar records the settings,
the per-epoch history (if trained) and the clean accuracy with every image meeting its own randomness.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from hrs_tf import baselines, cli, data, serialization, training  # noqa: E402
from hrs_tf.baseline_layers import SAP_VARIANTS, check_rate, check_stddev  # noqa: E402
from hrs_tf.errors import ConfigError  # noqa: E402

flags.DEFINE_string("defense", None, f"Baseline: {', '.join(baselines.DEFENSES)}.")
flags.DEFINE_string("base_model", None, "A trained model to wrap without retraining (sap; dropout with --test_rate).")
flags.DEFINE_string("dataset", "mnist", "Data set: mnist, fashion_mnist or cifar10.")
flags.DEFINE_string("data_dir", None, f"Folder holding the data set (else ${data.DATA_DIR_ENV}, the Keras cache, download).")
flags.DEFINE_string("arch", None, "Architecture: mnist, cifar10 or rs_mnist (default: the data set's own).")
flags.DEFINE_float("dropout_rate", None, "Train-time dropout after FC1 (dropout: required; gaussian: default the architecture's).")
flags.DEFINE_float("test_rate", None, "dropout: test-time rate r' of the saved model (default: plain model, dropout off at test).")
flags.DEFINE_float("init_std", None, "gaussian: noise deviation on the input (default 0.2 MNIST, 0.02 CIFAR-10).")
flags.DEFINE_float("inner_std", None, "gaussian: noise deviation before conv2..conv4 (default 0.1 MNIST, 0.01 CIFAR-10).")
flags.DEFINE_string("sap_variant", "exact", "sap: exact (sampling with replacement) or hrs (the HRS authors' approximation).")
flags.DEFINE_integer("epochs", 40, "Training epochs (the reference uses 40).")
flags.DEFINE_integer("batch_size", training.REFERENCE_BATCH_SIZE, "Mini-batch size.")
flags.DEFINE_float("learning_rate", training.REFERENCE_LEARNING_RATE, "SGD learning rate.")
flags.DEFINE_integer("seed", 0, "Random seed (weights, shuffling, dropout, noise).")
flags.DEFINE_integer("eval_repeats", 5, "Repeated evaluations of the test set for the clean accuracy.")
flags.DEFINE_string("output", None, "Output model path (.h5); a JSON sidecar is written beside it.")
flags.mark_flags_as_required(["defense", "output"])
FLAGS = flags.FLAGS


def check_flags():
    """Every setting checked before any data is loaded or anything trained."""
    if not FLAGS.output.endswith(".h5"):
        raise ConfigError(f"--output={FLAGS.output!r} must end in .h5")
    defense = baselines.check_defense(FLAGS.defense)
    if FLAGS.eval_repeats < 1:
        raise ConfigError(f"--eval_repeats={FLAGS.eval_repeats} must be at least 1")
    for name in ("dropout_rate", "test_rate"):
        if getattr(FLAGS, name) is not None:
            check_rate(getattr(FLAGS, name), name)
    for name in ("init_std", "inner_std"):
        if getattr(FLAGS, name) is not None:
            check_stddev(getattr(FLAGS, name), name)
    if FLAGS.sap_variant not in SAP_VARIANTS:
        raise ConfigError(f"--sap_variant={FLAGS.sap_variant!r} is not one of {', '.join(SAP_VARIANTS)}")
    if defense == "sap" and not FLAGS.base_model:
        raise ConfigError("--defense=sap wraps a trained model: give --base_model")
    if FLAGS.base_model and defense == "gaussian":
        raise ConfigError("--base_model applies to sap and dropout; the gaussian defense is trained with its noise")
    if FLAGS.base_model and defense == "dropout" and FLAGS.test_rate is None:
        raise ConfigError("--defense=dropout with --base_model needs --test_rate")
    if not FLAGS.base_model:
        training.check_training_settings(FLAGS.epochs, FLAGS.batch_size, FLAGS.learning_rate)
    return defense


def main(argv):
    defense = check_flags()
    dataset = data.load_dataset(FLAGS.dataset, FLAGS.data_dir)
    print(f"{dataset.name}: {len(dataset.x_train)} train / {len(dataset.x_test)} test images from {dataset.source}")
    if FLAGS.base_model:
        base = serialization.load_model(FLAGS.base_model)
        model, record = baselines.wrap_trained_model(base, dataset, defense, test_rate=FLAGS.test_rate,
                                                     sap_variant=FLAGS.sap_variant, eval_repeats=FLAGS.eval_repeats,
                                                     source=FLAGS.base_model)
    else:
        model, record = baselines.train_baseline(
            dataset, defense, dropout_rate=FLAGS.dropout_rate, test_rate=FLAGS.test_rate, init_std=FLAGS.init_std,
            inner_std=FLAGS.inner_std, eval_repeats=FLAGS.eval_repeats, arch=FLAGS.arch, epochs=FLAGS.epochs,
            batch_size=FLAGS.batch_size, learning_rate=FLAGS.learning_rate, seed=FLAGS.seed)
    record["command_line"] = {name: FLAGS[name].value for name in FLAGS if FLAGS[name].present}
    sidecar = baselines.write_model(model, record, FLAGS.output)
    acc = record["clean_accuracy"]
    print(f"{defense}: clean test accuracy {acc['mean']:.4f} +- {acc['std']:.4f} ({len(acc['runs'])} evaluations); "
          f"wrote {FLAGS.output} and {sidecar}")


if __name__ == "__main__":
    cli.run(main)
