"""Defensive dropout: Algorithm 1 (search the test rate r'), the (train rate x test rate) grid, or the gradient
histograms of the paper's Figure 4.

    python tools/defensive_dropout.py --model=runs/base_mnist.h5 --attack=cw_l2 --epsilon=0.01 --step=0.1 \
        --num_images=50 --output=runs/dd/search_cw_r0.3.json
    python tools/defensive_dropout.py --grid --models=r0.3:runs/base_mnist.h5,r0.7:runs/dropout0.7_mnist.h5 \
        --test_rates=0,0.1,0.3,0.5,0.7,0.9 --attack=fgsm --num_images=100 --output=runs/dd/grid_fgsm.json
    python tools/defensive_dropout.py --histograms --model=runs/dropout0.7_mnist.h5 --test_rates=0.1,0.3,0.5,0.7,0.9 \
        --output=runs/dd/gradients_train0.7.json

Attacks (paper section 4.1, targeted toward the 9 wrong classes of each of the first --num_images test images):
fgsm (eps 0.25), jsma_f / jsma_z (theta 1, gamma 1), cw_l2 (10 binary-search steps x 100 Adam iterations, learning
rate 0.1). Every setting flag of the attack (see tools/attack.py --help) overrides them.
The model is attacked white-box with dropout on (fresh masks on every pass). Every row is a cell saved at once in
``<output stem>_cells/`` (rerun the same command to resume); the JSON, a markdown table (.md) and plots (.png) are
written beside it. ``--executor=ray`` measures the grid's rows as Ray tasks in parallel (a local Ray instance, or
``--ray_address`` of an existing cluster; see the README); Algorithm 1 runs its steps one after another there too.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from hrs_tf import checks, cli  # noqa: E402
from hrs_tf import data  # noqa: E402
from hrs_tf.errors import ConfigError  # noqa: E402

flags.DEFINE_string("model", None, "Algorithm 1: a model trained with dropout after FC1 (.h5).")
flags.DEFINE_bool("grid", False, "Measure the (train rate x test rate) grid instead of Algorithm 1.")
flags.DEFINE_bool("histograms", False, "Figure 4: input-gradient samples of the first test image (target label + 1 mod "
                  "10) under each --test_rates and SAP, on --model; no attack.")
flags.DEFINE_integer("gradient_samples", 200, "--histograms: gradient samples (passes) per panel.")
flags.DEFINE_list("models", None, "--grid: models as r<train rate>:<path>, e.g. r0.3:runs/base_mnist.h5,r0.7:runs/d07.h5")
flags.DEFINE_list("test_rates", ["0", "0.1", "0.3", "0.5", "0.7", "0.9"], "--grid: test rates (the paper's columns).")
flags.DEFINE_float("train_rate", None, "Algorithm 1: the model's train rate, needed only for a model without dropout (0).")
cli.define_data_flags()
flags.DEFINE_string("attack", None, "fgsm, jsma_f, jsma_z or cw_l2 (the paper's attacks).")
flags.DEFINE_float("epsilon", 0.01, "Algorithm 1: the largest test-accuracy drop allowed (0.01 = 1 point).")
flags.DEFINE_float("step", 0.1, "Algorithm 1: the test-rate increment.")
flags.DEFINE_integer("num_images", 50, "Attack the first N test images x 9 targets.")
flags.DEFINE_integer("accuracy_images", None, "Test accuracy on the first N test images (default: all).")
flags.DEFINE_integer("repeats", 5, "Passes over the test images for the accuracy (each image its own mask).")
flags.DEFINE_integer("passes", 10, "Fresh passes judging each adversarial example (single-pass ASR averaged; majority).")
flags.DEFINE_string("setting", "whitebox", "How the attack crafts: whitebox (the paper: on the stochastic model), eot or fixed.")
flags.DEFINE_integer("eot_samples", 10, "--setting=eot: passes averaged per gradient.")
flags.DEFINE_integer("batch_size", 100, "Examples per attack batch.")
flags.DEFINE_integer("seed", 0, "Run seed; every row draws from a seed derived from it and its rates.")
cli.define_attack_flags()
flags.DEFINE_string("output", None, "Result JSON; the .md table, the .png plots and the row cells (<stem>_cells/) "
                    "are written beside it.")
cli.define_executor_flags()
flags.mark_flags_as_required(["output"])
FLAGS = flags.FLAGS


def main(argv):
    from hrs_tf import fileio, training
    from hrs_tf.attacks import settings as settings_module
    from hrs_tf.experiments.defensive_dropout import report
    from hrs_tf.experiments.defensive_dropout import search as dd

    if not FLAGS.output.endswith(".json"):
        raise ConfigError(f"--output={FLAGS.output!r} must end in .json")
    if FLAGS.histograms:
        return histograms()
    if FLAGS.attack is None:
        raise ConfigError("--attack is required (fgsm, jsma_f, jsma_z or cw_l2), except with --histograms")
    if FLAGS.attack not in dd.PAPER_ATTACKS:
        raise ConfigError(f"--attack={FLAGS.attack!r} is not one of the paper's attacks {', '.join(dd.PAPER_ATTACKS)}")
    attack_kwargs = dd.attack_settings(FLAGS.attack, cli.attack_settings(FLAGS.attack, FLAGS))
    for name in ("num_images", "repeats", "passes", "batch_size", "eot_samples"):
        checks.count(getattr(FLAGS, name), name, minimum=1)
    checks.choice(FLAGS.setting, "--setting", settings_module.SETTINGS)
    if FLAGS.grid:
        if FLAGS.model or not FLAGS.models:
            raise ConfigError("--grid takes --models=r<train rate>:<path>,... (not --model)")
        models = dd.parse_models(FLAGS.models)
        test_rates = [checks.rate(t, "test rate") for t in FLAGS.test_rates]
    else:
        if not FLAGS.model or FLAGS.models:
            raise ConfigError("Algorithm 1 takes one --model (use --grid for --models)")
        if FLAGS["test_rates"].present:
            raise ConfigError("--test_rates applies to --grid and --histograms; Algorithm 1 raises the test rate by "
                              "--step from the train rate")
        dd.check_search(FLAGS.epsilon, FLAGS.step)
        models = [(FLAGS.train_rate, FLAGS.model)]
    dataset = data.load_dataset(FLAGS.dataset, FLAGS.data_dir)
    print(f"{dataset.name}: {len(dataset.x_test)} test images from {dataset.source}", flush=True)
    log = lambda line: print(line, flush=True)  # noqa: E731
    evaluators = dd.ModelEvaluators(dataset, models, progress=log, attack=FLAGS.attack, attack_kwargs=attack_kwargs,
                                    num_images=FLAGS.num_images, accuracy_images=FLAGS.accuracy_images,
                                    repeats=FLAGS.repeats, passes=FLAGS.passes, batch_size=FLAGS.batch_size,
                                    seed=FLAGS.seed, setting=FLAGS.setting, eot_samples=FLAGS.eot_samples)
    settings = evaluators.settings()
    stem = os.path.splitext(FLAGS.output)[0]
    executor = cli.executor(FLAGS)
    try:
        if FLAGS.grid:
            result = dd.run_grid(evaluators, test_rates, FLAGS.output, settings, log=log, executor=executor)
        else:
            result = dd.run_search(evaluators, FLAGS.output, settings, FLAGS.epsilon, FLAGS.step, log=log,
                                   executor=executor)
    finally:
        executor.close()
    if FLAGS.grid:
        markdown = report.grid_tables(result)
        plots = list(report.plot_grid(result, stem).values())
    else:
        markdown = report.search_markdown(result)
        plots = [stem + ".png"]
        report.plot_search(result, plots[0])
    result.update(model_files=[path for _, path in models], versions=training.versions(),
                  command_line={name: FLAGS[name].value for name in FLAGS if FLAGS[name].present})
    fileio.write_json(FLAGS.output, result)
    fileio.write_text(stem + ".md", markdown)
    print(markdown)
    if not FLAGS.grid:
        print(f"chosen test rate r' = {result['chosen_test_rate']:g}")
    print(f"wrote {FLAGS.output}, {stem}.md, {', '.join(plots)}")


def histograms():
    import numpy as np

    from hrs_tf import fileio, training
    from hrs_tf.evaluation import des
    from hrs_tf.experiments.defensive_dropout import report
    from hrs_tf.experiments.defensive_dropout import search as dd

    if not FLAGS.model or FLAGS.grid or FLAGS.models:
        raise ConfigError("--histograms takes one --model (not --grid / --models)")
    if FLAGS.executor != "local":
        raise ConfigError(f"--executor={FLAGS.executor} applies to the search and the grid; --histograms computes in "
                          "this process")
    checks.count(FLAGS.gradient_samples, "gradient_samples", minimum=2)
    rates = [checks.rate(t, "test rate") for t in FLAGS.test_rates]
    dataset = data.load_dataset(FLAGS.dataset, FLAGS.data_dir)
    model = cli.load_model(FLAGS.model, dataset=dataset)
    png = os.path.splitext(FLAGS.output)[0] + ".png"
    result = dd.stored_gradient_histograms(FLAGS.output, FLAGS.model, rates, FLAGS.gradient_samples, FLAGS.seed)
    if result is not None:
        print(f"{FLAGS.output} holds these histograms already: redrawing {png} from it", flush=True)
    else:
        x, target = des.histogram_image(dataset)
        print(f"{dataset.name}: gradients of test image 0 toward class {int(target[0])}, {FLAGS.gradient_samples} "
              "passes per panel", flush=True)
        result = dd.gradient_histograms(model, x, target, rates, FLAGS.gradient_samples, seed=FLAGS.seed)
        result.update(kind="defensive_dropout_gradients", model_file=FLAGS.model, sha1=dd.file_digest(FLAGS.model),
                      samples=FLAGS.gradient_samples, versions=training.versions(),
                      command_line={name: FLAGS[name].value for name in FLAGS if FLAGS[name].present})
        fileio.write_json(FLAGS.output, result)
    report.plot_gradient_histograms(result, png)
    for panel in result["panels"]:
        print(f"{panel['label']}: gradient std at the {len(result['pixels'])} pixels "
              + ", ".join(f"{v:.4f}" for v in np.asarray(panel["samples"]).std(axis=0)))
    print(f"wrote {FLAGS.output}, {png}")


if __name__ == "__main__":
    cli.run(main)
