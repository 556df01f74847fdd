"""Attacks a saved model on the first N test images and writes the scores as JSON.

    python tools/attack.py --model=runs/base_mnist.h5 --dataset=mnist --attack=cw_pgd --eps=8/255 \
        --setting=eot --eot_samples=10 --num_images=100 --targets=all --output=results.json
    python tools/attack.py --model=runs/base_mnist.h5 --defense=sap --attack=pgd --eps=0.3 --output=sap_pgd.json
    python tools/attack.py --list_attacks

Attacks: every declared attack (``--list_attacks``); their settings are the flags below (unset: the attack's
default; a setting the attack does not take is an error). ``--defense`` makes a defended model from the loaded
one without training (``--list_defenses``). Settings: whitebox, eot (--eot_samples), fixed (--fixed=off |
pinned | a path like 0,0), derandomized. Targets: all (the 9 wrong classes of each image), random (one), none
(untargeted). The JSON holds every setting, the seed, the software versions and the scores under the papers'
decision rules (single pass, majority vote, MC average).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from hrs_tf import cli, data, fileio  # noqa: E402
from hrs_tf.evaluation.protocol import PROTOCOL_SETTINGS, TARGET_MODES  # noqa: E402
from hrs_tf.errors import ConfigError  # noqa: E402

flags.DEFINE_string("model", None, "Model file (.h5 or .keras) with logits output and [0, 1] inputs.")
flags.DEFINE_string("defense", None, "Defense spec made from --model without training, e.g. sap or dropout:0.3.")
cli.define_data_flags()
flags.DEFINE_string("attack", None, "Attack name (--list_attacks).")
flags.DEFINE_enum("setting", "whitebox", list(PROTOCOL_SETTINGS),
                  "Attack setting (derandomized: crafted and judged with randomness off).")
flags.DEFINE_integer("eot_samples", 10, "Gradient samples per step for --setting=eot.")
flags.DEFINE_string("fixed", "off", "Realisation crafted on for --setting=fixed: off, pinned, or a path like 0,0.")
flags.DEFINE_integer("num_images", 100, "Attack the first N test images.")
flags.DEFINE_enum("targets", "all", list(TARGET_MODES), "all / random wrong targets, or none (untargeted).")
flags.DEFINE_integer("passes", 10, "Fresh stochastic passes judging success (single pass, majority vote, MC average).")
flags.DEFINE_bool("round_8bit", False, "Round adversarial images to 8-bit pixels before judging them.")
flags.DEFINE_bool("only_correct", False, "Attack only images the model classifies correctly (majority of passes).")
flags.DEFINE_integer("batch_size", 100, "Examples per attack batch.")
flags.DEFINE_integer("eval_batch_size", 100, "Examples per scoring forward pass (1 = the reference's one at a time).")
flags.DEFINE_integer("seed", 0, "Seed of Keras / stochastic layers, random starts and random targets.")
flags.DEFINE_string("output", None, "Output JSON path.")
cli.define_attack_flags()
cli.define_listing_flags("attacks", "defenses")
flags.mark_flags_as_required(["model", "attack", "output"])
FLAGS = flags.FLAGS


def main(argv):
    from hrs_tf import defenses, evaluation, training
    from hrs_tf.layers import stochastic

    if not FLAGS.output.endswith(".json"):
        raise ConfigError(f"--output={FLAGS.output!r} must end in .json")
    attack_kwargs = cli.attack_settings(FLAGS.attack, FLAGS)
    fixed = stochastic.parse_fixed(FLAGS.fixed)
    if FLAGS.setting != "fixed" and FLAGS["fixed"].present:
        raise ConfigError("--fixed applies only with --setting=fixed")
    if FLAGS.defense:
        defenses.parse(FLAGS.defense)

    import keras

    keras.utils.set_random_seed(FLAGS.seed)
    dataset = data.load_dataset(FLAGS.dataset, FLAGS.data_dir)
    model = cli.load_model(FLAGS.model, FLAGS.defense, dataset=dataset)
    print(f"{dataset.name}: {len(dataset.x_test)} test images from {dataset.source}; model {FLAGS.model}"
          + (f" with defense {FLAGS.defense}" if FLAGS.defense else ""), flush=True)
    result = evaluation.evaluate_protocol(
        model, dataset, FLAGS.attack, num_images=FLAGS.num_images, targets=FLAGS.targets, setting=FLAGS.setting,
        eot_samples=FLAGS.eot_samples, fixed=fixed, passes=FLAGS.passes, only_correct=FLAGS.only_correct,
        batch_size=FLAGS.batch_size, eval_batch_size=FLAGS.eval_batch_size, seed=FLAGS.seed, progress=True,
        round_8bit=FLAGS.round_8bit, **attack_kwargs)
    result["command_line"] = {name: FLAGS[name].value for name in FLAGS if FLAGS[name].present}
    result.update(model=FLAGS.model, defense=FLAGS.defense, attacker_view=defenses.attacker_view(model),
                  dataset=dataset.name, data_source=dataset.source,
                  versions=dict(training.versions(), cleverhans=evaluation.cleverhans_version()))
    fileio.write_json(FLAGS.output, result)
    r = result["results"]
    print(f"ASR {r['asr']:.4f} (majority of {FLAGS.passes}: {r['asr_majority']:.4f}, MC average: {r['asr_mc_average']:.4f}); "
          f"clean accuracy {result['clean']['accuracy']:.4f}; mean L2 of successes "
          f"{r['distortion_of_successful']['l2']['mean']}; wrote {FLAGS.output}")


if __name__ == "__main__":
    cli.run(main)
