"""Trains one scheme of the Random Spiking paper (Table 2), resumable, saving the model as .h5 + JSON sidecar.

    python tools/train_rs.py --scheme=RS-1 --dataset=mnist --data_dir=../shared/data --output=runs/rs/rs1_mnist.h5
    python tools/train_rs.py --scheme=Dropout-Adv --dataset=mnist --epochs=5 --adv_per_confidence=300 --output=...
    python tools/train_rs.py --scheme=MagNet --base_model=runs/rs/dropout_mnist.h5 --output=runs/rs/magnet_mnist.h5
    python tools/train_rs.py --scheme=rs1:0.7 --dataset=fashion_mnist --arch=wrn --depth=16 --width=4 --output=...

Schemes by their paper names (Standard, Dropout, Distillation, RS-1, RS-1-Dropout, RS-1-Adv, Dropout-Adv, MagNet,
RC) or as defense specs (``rs1:0.7``). The network (RS MNIST CNN on MNIST, WRN-28-10 otherwise; ``--arch``,
``--depth``, ``--width``) and recipe (Table 7: epochs 50 / 200, learning rate, step drops, augmentation) are the
paper's unless a flag changes them. MagNet and RC are made from a trained Dropout model (``--base_model``; without
it one is trained first). A killed run continues at its next epoch (adversarial examples: at the next chunk).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from hrs_tf import cli, data  # noqa: E402
from hrs_tf.errors import ConfigError  # noqa: E402
from randspike import recipe_flags  # noqa: E402

flags.DEFINE_string("scheme", None, "Scheme: a paper name (RS-1, Dropout-Adv, MagNet, ...) or a defense spec.")
flags.mark_flag_as_required("scheme")
flags.DEFINE_string("base_model", None, "MagNet / RC: the trained Dropout model they are made from (.h5).")
cli.define_data_flags()
flags.DEFINE_list("epochs", None, "Training epochs (default: the paper's, 50 RS MNIST CNN / 200 WRN; MagNet: "
                  "its autoencoders' epochs, 100 MNIST).")
flags.DEFINE_integer("seed", 0, "Random seed (weights, shuffling, augmentation, noise, adversarial examples).")
recipe_flags.define("the scheme")
flags.DEFINE_string("target_model", None, "RS-1-Adv / Dropout-Adv: the trained target model (default: trained first).")
flags.DEFINE_list("confidences", None, "Adversarial schemes: C&W confidences K (default Table 3's).")
flags.DEFINE_integer("per_confidence", None, "Adversarial schemes: examples generated per K (paper 3000 MNIST).")
flags.DEFINE_integer("kept", None, "Adversarial schemes: smallest-L2 examples added (default 5/6 of those generated).")
flags.DEFINE_float("l2_cutoff", None, "Adversarial schemes: L2 cut-off (default Table 3's: 3.0 MNIST, 1.0 others).")
flags.DEFINE_integer("cw_iterations", None, "Adversarial schemes: C&W iterations (default 1000).")
flags.DEFINE_integer("cw_search_steps", None, "Adversarial schemes: C&W binary-search steps (default 9).")
flags.DEFINE_float("cw_learning_rate", None, "Adversarial schemes: C&W Adam step (default 0.01).")
flags.DEFINE_integer("eot", None, "Adversarial schemes: EOT samples per C&W step on the stochastic target (default 1).")
cli.define_model_output_flag()
FLAGS = flags.FLAGS

ADVERSARIAL_FLAGS = ("per_confidence", "kept", "l2_cutoff", "cw_iterations", "cw_search_steps", "cw_learning_rate",
                     "eot")  # spec keywords


def main(argv):
    from hrs_tf.defenses import making
    from randspike import schemes

    cli.model_output(FLAGS.output)
    spec = schemes.spec_of(FLAGS.scheme)
    keywords = [f"{name}={FLAGS[name].value}" for name in ADVERSARIAL_FLAGS if FLAGS[name].value is not None]
    if FLAGS.confidences:
        keywords.append("confidences=" + ";".join(FLAGS.confidences))
    if keywords:
        spec = schemes.with_keywords(spec, keywords)
    settings = recipe_flags.settings(FLAGS)
    if FLAGS.target_model is not None:
        settings["target_model"] = FLAGS.target_model
    epochs = cli.parse_epochs(FLAGS.epochs)
    if epochs is None and spec.source() is None and settings.get("arch", "wrn" if FLAGS.dataset != "mnist" else "") == "wrn":
        epochs = 200  # Table 7: the WRN recipe
    if spec.source() is None and FLAGS.base_model:
        raise ConfigError(f"scheme {spec.label} is trained from scratch; --base_model does not apply to it")
    dataset = data.load_dataset(FLAGS.dataset, FLAGS.data_dir)
    print(f"{dataset.name}: scheme {spec.label} ({spec.text}) -> {FLAGS.output}", flush=True)
    command_line = {name: FLAGS[name].value for name in FLAGS if FLAGS[name].present}
    _, record = making.make(spec, dataset, FLAGS.output, base_model=FLAGS.base_model, epochs=epochs, seed=FLAGS.seed,
                            eval_repeats=1, log=lambda line: print(line, flush=True),
                            annotations={"command_line": command_line}, **settings)
    print(f"{spec.label}: clean test accuracy {record['clean_accuracy']['mean']:.4f} (one stochastic pass, every image "
          f"its own randomness); wrote {FLAGS.output}")


if __name__ == "__main__":
    cli.run(main)
