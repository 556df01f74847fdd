"""Makes a defended model from a defense spec (trained, or wrapped around a trained model) and saves it as .h5 +
JSON sidecar.

    python tools/train_baseline.py --defense=none --dropout_rate=0.7 --dataset=mnist --epochs=40 --output=runs/dropout0.7_mnist.h5
    python tools/train_baseline.py --defense=gaussian:0.2,0.1 --dataset=mnist --output=runs/gaussian_mnist.h5
    python tools/train_baseline.py --defense=sap:exact --base_model=runs/base_mnist.h5 --output=runs/sap_mnist.h5
    python tools/train_baseline.py --defense=dropout:0.3 --base_model=runs/base_mnist.h5 --output=runs/dd0.3_mnist.h5
    python tools/train_baseline.py --list_defenses

Every registered defense is accepted (``--list_defenses``; plug-in packages add theirs). A defense trained from
scratch is trained with the reference recipe (``--epochs`` default: the defense's reference value); one made
from a trained model (SAP, test-time dropout, ...) wraps ``--base_model`` without retraining, or trains that
source model first when none is given. The sidecar records the spec, the settings, the clean accuracy with
every image meeting its own randomness, and what an adaptive attacker needs to know.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from hrs_tf import checks, cli, data  # noqa: E402
from hrs_tf.errors import ConfigError  # noqa: E402

flags.DEFINE_string("defense", None, "Defense spec, e.g. none, dropout:0.3, sap:exact, gaussian:0.2,0.1, adv:0.3, "
                    "hrs:5x5 (--list_defenses prints every one).")
flags.DEFINE_string("base_model", None, "A trained model to make a derived defense from without retraining.")
cli.define_data_flags()
cli.define_training_flags()
flags.DEFINE_integer("eval_repeats", 5, "Repeated evaluations of the test set for the clean accuracy.")
cli.define_model_output_flag()
cli.define_listing_flags("defenses")
flags.mark_flags_as_required(["defense", "output"])
FLAGS = flags.FLAGS


def main(argv):
    from hrs_tf import defenses, training
    from hrs_tf.defenses import making

    cli.model_output(FLAGS.output)
    spec = defenses.parse(FLAGS.defense)
    checks.count(FLAGS.eval_repeats, "eval_repeats", minimum=1)
    epochs = cli.parse_epochs(FLAGS.epochs)  # None: the defense's reference value
    settings = cli.training_settings(FLAGS)
    if FLAGS.dropout_rate is not None:
        checks.rate(FLAGS.dropout_rate, "dropout_rate")
    if FLAGS.base_model and spec.source() is None:
        raise ConfigError(f"defense {spec.text!r} is trained from scratch; --base_model does not apply to it")
    if not FLAGS.base_model:
        training.check_training_settings(1, FLAGS.batch_size, FLAGS.learning_rate)
    dataset = data.load_dataset(FLAGS.dataset, FLAGS.data_dir)
    print(f"{dataset.name}: {len(dataset.x_train)} train / {len(dataset.x_test)} test images from {dataset.source}; "
          f"defense {spec.text} ({spec.label}, {spec.make})", flush=True)
    command_line = {name: FLAGS[name].value for name in FLAGS if FLAGS[name].present}
    _, record = making.make(spec, dataset, FLAGS.output, base_model=FLAGS.base_model, epochs=epochs, seed=FLAGS.seed,
                            eval_repeats=FLAGS.eval_repeats, log=lambda line: print(line, flush=True),
                            annotations={"command_line": command_line}, **settings)
    acc = record["clean_accuracy"]
    print(f"{spec.label}: clean test accuracy {acc['mean']:.4f} +- {acc['std']:.4f} ({len(acc['runs'])} evaluations); "
          f"wrote {FLAGS.output} and {os.path.splitext(FLAGS.output)[0]}.json")


if __name__ == "__main__":
    cli.run(main)
