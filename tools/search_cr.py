"""Compression-rate search of the defensive hash classifier (hash paper Algorithm 1), resumable row by row; writes the
result JSON and, with --docs, a markdown table and a heat map of the robustness estimator R.

    python tools/search_cr.py --base_model=runs/hash/base_hash_mnist.h5 --dataset=mnist \
        --output=runs/hash/cr_search_mnist.json --docs=docs/hash_cr_search_mnist.md

Every pair of the grid (CR1 from (N1 M1)^-1/2, CR2 from 1/2, each divided by --factor while above its lower limit;
--max_cr1 / --max_cr2 keep the first values only) is installed on the base model, retrained --epochs, and measured:
test accuracy, g (mean |dZ/dx|) and phi (logit variance) on --estimator_images test images. R = alpha g' +
(1 - alpha) phi' after min-max normalisation; R = 1 where the accuracy drop reaches --threshold. Each pair is a
cell of its own (a JSON file in <output stem>_pairs/): a killed search continues with the missing pairs, and
``--executor=ray`` retrains the pairs as Ray tasks in parallel (a local Ray instance, or ``--ray_address`` of an
existing cluster; see the README).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from hrs_tf import cli, data  # noqa: E402
from hrs_tf.errors import ConfigError  # noqa: E402

flags.DEFINE_string("base_model", None, "The trained model whose last two fully connected layers are replaced (.h5).")
cli.define_data_flags()
flags.DEFINE_integer("epochs", 3, "Retraining epochs per CR pair (paper: 2-3).")
flags.DEFINE_integer("train_images", None, "Retrain on the first N training images only (default: all).")
flags.DEFINE_float("factor", 2.0, "Division factor between successive rates (paper: 2).")
flags.DEFINE_integer("max_cr1", None, "Keep only the first N values of CR1.")
flags.DEFINE_integer("max_cr2", None, "Keep only the first N values of CR2.")
flags.DEFINE_float("alpha", 0.5, "Weight of the gradient term g in R (paper: 0.5).")
flags.DEFINE_float("threshold", 0.01, "Accuracy drop at which a pair is rejected, R = 1 (paper: 1%).")
flags.DEFINE_integer("estimator_images", 1000, "Test images g and phi are measured on.")
flags.DEFINE_integer("seed", 0, "Seed of the hashed layers' initial weights and of the retraining.")
flags.DEFINE_integer("batch_size", 128, "Retraining batch size.")
flags.DEFINE_float("learning_rate", 0.01, "Retraining learning rate (reference SGD recipe).")
flags.DEFINE_string("output", None, "Result JSON, written once every pair is measured (the pairs' cells are in "
                    "<output stem>_pairs/).")
flags.DEFINE_string("docs", None, "Optional markdown report (a PNG heat map of R is written beside it).")
flags.mark_flags_as_required(["base_model", "output"])
cli.define_executor_flags()
FLAGS = flags.FLAGS


def main(argv):
    from hashdef.experiments import cr_search
    from hrs_tf.evaluation import protocol
    from hrs_tf.models import serialization

    if not FLAGS.output.endswith(".json"):
        raise ConfigError(f"--output={FLAGS.output!r} must end in .json")
    if FLAGS.docs is not None and not FLAGS.docs.endswith(".md"):
        raise ConfigError(f"--docs={FLAGS.docs!r} must end in .md")
    dataset = data.load_dataset(FLAGS.dataset, FLAGS.data_dir)
    model = serialization.load_model(FLAGS.base_model)
    protocol.check_model_fits(model, dataset)
    executor = cli.executor(FLAGS)
    try:
        result = cr_search.search(model, dataset, FLAGS.output, epochs=FLAGS.epochs, factor=FLAGS.factor,
                                  max_cr1=FLAGS.max_cr1, max_cr2=FLAGS.max_cr2, alpha=FLAGS.alpha,
                                  threshold=FLAGS.threshold, estimator_images=FLAGS.estimator_images,
                                  train_images=FLAGS.train_images, seed=FLAGS.seed, batch_size=FLAGS.batch_size,
                                  learning_rate=FLAGS.learning_rate, base_model_path=FLAGS.base_model,
                                  log=lambda line: print(line, flush=True), verbose=0, executor=executor)
    finally:
        executor.close()
    if FLAGS.docs:
        command = "python tools/search_cr.py " + " ".join(sys.argv[1:])
        cr_search.report(result, FLAGS.docs, os.path.splitext(FLAGS.docs)[0] + ".png", command)
        print(f"wrote {FLAGS.docs}")


if __name__ == "__main__":
    cli.run(main)
