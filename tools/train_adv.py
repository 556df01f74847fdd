"""Madry PGD adversarial training; rerun the same command to resume after an interruption.

    python tools/train_adv.py --dataset=mnist --eps=0.3 --pgd_steps=40 --pgd_step_size=0.01 --epochs=40 --output=runs/adv_mnist.h5
    python tools/train_adv.py --dataset=cifar10 --eps=2/255 --pgd_steps=7 --pgd_step_size=0.5/255 --epochs=40 --output=runs/adv_cifar.h5

Every mini-batch is replaced by PGD examples crafted on the current model (random start; ``--adv_fraction``
below 1 mixes adversarial and clean examples). After every epoch ``<output>.checkpoint.h5`` (weights,
optimizer state, epoch, history, settings) is written atomically; a rerun resumes at the next epoch and
refuses other settings. At the end: the model (.h5) and a JSON sidecar with the history, the clean test
accuracy and the PGD accuracy on the first ``--eval_images`` test images.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from hrs_tf import checks, cli, data, training  # noqa: E402
from hrs_tf.defenses import adversarial_training, write_model  # noqa: E402

cli.define_data_flags()
cli.define_training_flags("Training epochs (default 40; a rerun with more epochs continues).")
flags.DEFINE_string("eps", None, "L-inf training bound in [0, 1], e.g. 0.3 or 2/255.")
flags.DEFINE_integer("pgd_steps", 40, "PGD steps per training batch (Madry: 40 MNIST, 7 CIFAR-10).")
flags.DEFINE_string("pgd_step_size", None, "PGD step size (default 4/3 eps / pgd_steps: Madry's 0.01 at eps 0.3, 40 steps); fractions accepted.")
flags.DEFINE_float("adv_fraction", 1.0, "Fraction of each batch replaced by PGD examples (Madry: 1).")
flags.DEFINE_bool("random_start", True, "Uniform random start in the eps-ball.")
flags.DEFINE_integer("eps_warmup_epochs", 0, "Epochs over which eps grows linearly from near 0 to --eps (0: none; "
                     "a model that stays at chance at eps 0.3 from scratch can learn with 2-3).")
flags.DEFINE_integer("eval_images", 500, "Test images for the final PGD accuracy (0: skip).")
cli.define_model_output_flag("Output model path (.h5); sidecar JSON and checkpoint beside it.")
flags.mark_flag_as_required("eps")
FLAGS = flags.FLAGS


def main(argv):
    cli.model_output(FLAGS.output)
    eps = checks.fraction(FLAGS.eps, "eps")
    step_size = None if FLAGS.pgd_step_size is None else checks.fraction(FLAGS.pgd_step_size, "pgd_step_size")
    adversarial_training.check_settings(eps, FLAGS.pgd_steps, step_size, FLAGS.adv_fraction)
    checks.count(FLAGS.eps_warmup_epochs, "eps_warmup_epochs", minimum=0)
    epochs = cli.parse_epochs(FLAGS.epochs, default=40)
    training.check_training_settings(epochs, FLAGS.batch_size, FLAGS.learning_rate)
    dataset = data.load_dataset(FLAGS.dataset, FLAGS.data_dir)
    print(f"{dataset.name}: {len(dataset.x_train)} train / {len(dataset.x_test)} test images from {dataset.source}",
          flush=True)
    model, record = adversarial_training.train_adversarial(
        dataset, adversarial_training.checkpoint_path(FLAGS.output), eps, epochs, pgd_steps=FLAGS.pgd_steps,
        pgd_step_size=step_size, adv_fraction=FLAGS.adv_fraction, random_start=FLAGS.random_start,
        eps_warmup_epochs=FLAGS.eps_warmup_epochs, seed=FLAGS.seed,
        eval_images=FLAGS.eval_images, log=lambda line: print(line, flush=True), **cli.training_settings(FLAGS))
    record["command_line"] = {name: FLAGS[name].value for name in FLAGS if FLAGS[name].present}
    sidecar = write_model(model, record, FLAGS.output)
    print(f"clean test accuracy {record['test_accuracy']:.4f}; wrote {FLAGS.output} and {sidecar}")


if __name__ == "__main__":
    cli.run(main)
