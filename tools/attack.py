"""Attacks a saved model on the first N test images and writes the scores as JSON.

    python tools/attack.py --model=runs/base_mnist.h5 --dataset=mnist --attack=cw_pgd --eps=8/255 \
        --setting=eot --eot_samples=10 --num_images=100 --targets=all --output=results.json

Attacks: fgsm, bim, mim, pgd, pgd_l2, cw_l2, cw_pgd, jsma_z, jsma_f, hrs_pgd, hrs_cw_pgd, hrs_cw_l2.
Settings: whitebox, eot (--eot_samples), fixed (--fixed=off | pinned | an HRS path like 0,0).
Targets: all (the 9 wrong classes of each image), random (one), none (untargeted).
Attack parameters left unset take the attack's defaults (see docs/attacks.md); a parameter the attack does
not take is an error. The JSON holds every setting, the seed, the software versions and the scores.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from hrs_tf import cli, data, fileio  # noqa: E402
from hrs_tf.evaluation import PROTOCOL_SETTINGS  # noqa: E402
from hrs_tf.errors import ConfigError  # noqa: E402

flags.DEFINE_string("model", None, "Model file (.h5 or .keras) with logits output and [0, 1] inputs.")
flags.DEFINE_string("dataset", "mnist", "Data set: mnist, fashion_mnist or cifar10.")
flags.DEFINE_string("data_dir", None, f"Folder holding the data set (else ${data.DATA_DIR_ENV}, the Keras cache, download).")
flags.DEFINE_string("attack", None, "Attack name (see the module docstring).")
flags.DEFINE_enum("setting", "whitebox", list(PROTOCOL_SETTINGS),
                  "Attack setting (derandomized: crafted and judged with randomness off).")
flags.DEFINE_integer("eot_samples", 10, "Gradient samples per step for --setting=eot.")
flags.DEFINE_string("fixed", "off", "Realisation crafted on for --setting=fixed: off, pinned, or an HRS path like 0,0.")
flags.DEFINE_integer("num_images", 100, "Attack the first N test images.")
flags.DEFINE_enum("targets", "all", ["all", "random", "none"], "all / random wrong targets, or none (untargeted).")
flags.DEFINE_integer("passes", 10, "Fresh stochastic passes judging success (single-pass ASR and majority-of-k).")
flags.DEFINE_bool("only_correct", False, "Attack only images the model classifies correctly (majority of passes).")
flags.DEFINE_integer("batch_size", 100, "Examples per attack batch.")
flags.DEFINE_integer("eval_batch_size", 100, "Examples per scoring forward pass (1 = the reference's one at a time).")
flags.DEFINE_integer("seed", 0, "Seed of Keras / stochastic layers, random starts and random targets.")
flags.DEFINE_string("output", None, "Output JSON path.")
# Attack parameters (None = the attack's default).
flags.DEFINE_string("eps", None, "Perturbation bound in [0, 1] pixel units, e.g. 0.3 or 8/255 (L2 radius for pgd_l2).")
flags.DEFINE_string("eps_iter", None, "Step size per iteration (fraction accepted).")
flags.DEFINE_integer("nb_iter", None, "Iterations.")
flags.DEFINE_bool("rand_init", None, "Random start in the eps-ball (pgd, pgd_l2, cw_pgd).")
flags.DEFINE_float("kappa", None, "C&W confidence (cw_l2, hrs_cw_l2, cw_pgd).")
flags.DEFINE_float("learning_rate", None, "Adam learning rate (cw_l2, hrs_pgd, hrs_cw_pgd).")
flags.DEFINE_integer("binary_search_steps", None, "C&W binary-search steps on c.")
flags.DEFINE_integer("max_iterations", None, "C&W Adam iterations per constant.")
flags.DEFINE_float("initial_const", None, "C&W initial constant c.")
flags.DEFINE_bool("abort_early", None, "C&W abort early.")
flags.DEFINE_float("theta", None, "JSMA change per feature.")
flags.DEFINE_float("gamma", None, "JSMA maximum fraction of features changed.")
flags.DEFINE_float("decay_factor", None, "MIM momentum decay.")
flags.mark_flags_as_required(["model", "attack", "output"])
FLAGS = flags.FLAGS

PARAMETER_FLAGS = ("eps", "eps_iter", "nb_iter", "rand_init", "kappa", "learning_rate", "binary_search_steps",
                   "max_iterations", "initial_const", "abort_early", "theta", "gamma", "decay_factor")


def main(argv):
    from hrs_tf import evaluation, serialization, training
    from hrs_tf.attacks import get_attack

    if not FLAGS.output.endswith(".json"):
        raise ConfigError(f"--output={FLAGS.output!r} must end in .json")
    given = {name: getattr(FLAGS, name) for name in PARAMETER_FLAGS if getattr(FLAGS, name) is not None}
    attack_kwargs = evaluation.attack_parameters(FLAGS.attack, given)
    fixed = evaluation.parse_fixed(FLAGS.fixed)
    if FLAGS.setting != "fixed" and FLAGS["fixed"].present:
        raise ConfigError("--fixed applies only with --setting=fixed")
    get_attack(FLAGS.attack)

    import keras

    keras.utils.set_random_seed(FLAGS.seed)
    dataset = data.load_dataset(FLAGS.dataset, FLAGS.data_dir)
    model = serialization.load_model(FLAGS.model)
    evaluation.check_model_fits(model, dataset)
    print(f"{dataset.name}: {len(dataset.x_test)} test images from {dataset.source}; model {FLAGS.model}", flush=True)
    result = evaluation.evaluate_protocol(
        model, dataset, FLAGS.attack, num_images=FLAGS.num_images, targets=FLAGS.targets, setting=FLAGS.setting,
        eot_samples=FLAGS.eot_samples, fixed=fixed, passes=FLAGS.passes, only_correct=FLAGS.only_correct,
        batch_size=FLAGS.batch_size, eval_batch_size=FLAGS.eval_batch_size, seed=FLAGS.seed, progress=True,
        **attack_kwargs)
    result["command_line"] = {name: FLAGS[name].value for name in FLAGS if FLAGS[name].present}
    result["model"] = FLAGS.model
    result["dataset"] = dataset.name
    result["data_source"] = dataset.source
    result["versions"] = dict(training.versions(), cleverhans=evaluation.cleverhans_version())
    fileio.write_json(FLAGS.output, result)
    r = result["results"]
    print(f"ASR {r['asr']:.4f} (majority of {FLAGS.passes}: {r['asr_majority']:.4f}); clean accuracy "
          f"{result['clean']['accuracy']:.4f}; mean L2 of successes {r['distortion_of_successful']['l2']['mean']}; "
          f"wrote {FLAGS.output}")


if __name__ == "__main__":
    cli.run(main)
