"""Clean test accuracy of a saved model, as the papers measure it (each image its own randomness).

    python tools/evaluate_accuracy.py --model=runs/hrs_mnist_5x5/hrs_model.h5 --dataset=mnist --repeats=5
    python tools/evaluate_accuracy.py --hrs_weights_dir="Model/MNIST_models/test_hrs[10][10]" --dataset=mnist
    python tools/evaluate_accuracy.py --model=runs/hrs_mnist_5x5/hrs_model.h5 --dataset=mnist --digest --path=3,1

``--digest`` also prints the SHA-256 of the logits with the randomness fixed (stochastic layers off, the layers
with discrete realisations -- HRS switches -- pinned to ``--path``, default realisation 0 of each): run it in
two processes, e.g. on a model and on its saved-and-reloaded copy, and equal digests mean bit-identical
outputs. ``--defense`` makes a defended model from ``--model`` without training (e.g. ``sap``).

The second form reads the published repo's per-channel Keras-2 weight files (``<block>_<channel>``).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from hrs_tf import checks, cli, data, fileio, models, training  # noqa: E402
from hrs_tf.defenses import hrs  # noqa: E402
from hrs_tf.errors import ConfigError  # noqa: E402
from hrs_tf.evaluation import metrics  # noqa: E402
from hrs_tf.layers import stochastic  # noqa: E402

flags.DEFINE_string("model", None, "A whole-model file (.h5 / .keras).")
flags.DEFINE_string("defense", None, "Defense spec made from --model without training, e.g. sap or dropout:0.3.")
flags.DEFINE_string("hrs_weights_dir", None, "Or: a published HRS folder of per-channel weight files, e.g. test_hrs[10][10].")
flags.DEFINE_string("arch", None, "Architecture of --hrs_weights_dir (default: the data set's own).")
cli.define_data_flags()
flags.DEFINE_integer("repeats", 5, "Evaluations of the whole test set (stochastic models).")
flags.DEFINE_integer("num_images", None, "Only the first N test images (default: all).")
flags.DEFINE_bool("digest", False, "Also print the SHA-256 of the fixed-randomness logits (see above).")
flags.DEFINE_list("path", None, "--digest: realisation per pinnable layer (HRS: channel per block), e.g. 3,1 "
                  "(default 0 in every one).")
cli.define_listing_flags("defenses")
flags.DEFINE_string("output", None, "Optional JSON result file.")
flags.DEFINE_integer("seed", 0, "Seed of every random draw of the evaluation (stochastic layers): the same command "
                     "gives the same number.")
FLAGS = flags.FLAGS


def _parse_path(items):
    if not items:
        return None
    try:
        return tuple(int(c) for c in items)
    except ValueError:
        raise ConfigError(f"--path={','.join(items)!r} must be channel numbers such as 3,1") from None


def main(argv):
    if bool(FLAGS.model) == bool(FLAGS.hrs_weights_dir):
        raise ConfigError("give exactly one of --model or --hrs_weights_dir")
    if FLAGS.repeats < 1:
        raise ConfigError(f"repeats={FLAGS.repeats} must be at least 1")
    dataset = data.load_dataset(FLAGS.dataset, FLAGS.data_dir)
    if FLAGS.defense and not FLAGS.model:
        raise ConfigError("--defense is made from a --model")
    if FLAGS.model:
        model = cli.load_model(FLAGS.model, FLAGS.defense, dataset=dataset)
    else:
        model = hrs.load_published_hrs(FLAGS.hrs_weights_dir, models.architecture_for(dataset, FLAGS.arch))
    stochastic.reseed(model, checks.count(FLAGS.seed, "seed"))
    n = FLAGS.num_images or len(dataset.x_test)
    x, y = data.first_test_images(dataset, n)
    result = metrics.clean_accuracy(model, x, y, FLAGS.repeats)
    print(f"test accuracy {result['mean']:.4f} +- {result['std']:.4f} (min {result['min']:.4f}, max {result['max']:.4f}, "
          f"{len(result['runs'])} evaluations of {n} images)")
    digest = None
    if FLAGS.digest or FLAGS.path:
        path = _parse_path(FLAGS.path)
        digest = metrics.logits_digest(model, x, path)
        print(f"logits sha256 {digest} ({n} images, fixed randomness{'' if path is None else ', path ' + str(list(path))})")
    if FLAGS.output:
        fileio.write_json(FLAGS.output, {"kind": "clean_accuracy", "model": FLAGS.model, "defense": FLAGS.defense,
                                         "hrs_weights_dir": FLAGS.hrs_weights_dir,
                                         "dataset": dataset.name, "num_images": n, "seed": FLAGS.seed,
                                         "accuracy": result,
                                         "logits_sha256": digest, "path": FLAGS.path,
                                         "versions": training.versions()})


if __name__ == "__main__":
    cli.run(main)
