"""Reproduces the hash paper's evaluation on one data set (resumable) and writes docs/reproduce_hash_<dataset>.md.

    python tools/reproduce_hash.py --dataset=mnist --data_dir=../shared/data --work_dir=runs/reproduce_hash_mnist \
        --use_model="Original=runs/hash/base_hash_mnist.h5"

Models: Original (the paper's seven-layer model), Hash (defensive hash classifier, 3 retraining epochs), GI1-3 and
Hash + GI1-3, bit depth and median smoothing, pruning and 8- / 3-bit quantisation (and PGD adversarial training with
--adv_epochs, its PGD steps per batch --adv_steps, its eps warm-up epochs --adv_warmup). Tables I-IV and VII,
Figure 2, Figures 3-4 and the adaptive attacks (``--experiments``; the page shows the sections of the experiments
run); the scale flags say how many images each attack uses (defaults far below the paper's; the report states
them). The command trains what it needs, then computes every result cell it does not have yet; kill it and run it
again to continue. ``--executor=ray`` runs the training and result cells as Ray tasks in
parallel (a local Ray instance, or ``--ray_address`` of an existing cluster; see the README).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from hrs_tf import cli, data  # noqa: E402

cli.define_data_flags()
cli.define_study_flags("Folder for models and result cells (default runs/reproduce_hash_<dataset>).")
flags.DEFINE_multi_string("use_model", [], "NAME=PATH of an already trained model, e.g. 'Original=runs/base.h5' or "
                          "'Hash=runs/hash.h5'.")
flags.DEFINE_list("experiments", None, "Experiments to run: table1, table2, table3, table4, table7, figure2, figures34, "
                  "adaptive (default: all).")
flags.DEFINE_integer("base_epochs", None, "Epochs of the original model when trained here (default 8).")
flags.DEFINE_integer("hash_epochs", None, "Retraining epochs of the hash model (default 3).")
flags.DEFINE_integer("adv_epochs", None, "Epochs of PGD adversarial training for Figures 3-4 (default 0: not run).")
flags.DEFINE_integer("adv_steps", None, "PGD steps per batch of that adversarial training (default 40, Madry's).")
flags.DEFINE_integer("adv_warmup", None, "Epochs over which its eps grows linearly to --eps (default 0; from scratch "
                     "at eps 0.3 the seven-layer model stays at chance without).")
flags.DEFINE_float("eps", None, "L-inf radius of FGSM / BIM / MIM / BPDA / adaptive attacks (default 0.3 MNIST, 0.1 "
                   "Fashion-MNIST).")
for name, default, text in (("fast_images", 1000, "FGSM / BIM / MIM images"), ("deepfool_images", 1000, "DeepFool images"),
                            ("targeted_images", 10, "first test images for JSMA / C&W / EAD (x 9 targets)"),
                            ("bpda_images", 1000, "BPDA and adaptive-attack images"),
                            ("substitute_images", 1000, "sub-FGSM images"), ("zoo_images", 10, "ZOO untargeted images"),
                            ("zoo_targeted_images", 2, "ZOO targeted images (x 9 targets)"),
                            ("zoo_queries", 20000, "ZOO query budget per example"),
                            ("cw_search_steps", 9, "C&W / EAD binary-search steps"),
                            ("cw_iterations", 1000, "C&W / EAD iterations per search step"),
                            ("square_queries", 5000, "Square attack query budget"),
                            ("histogram_images", 1000, "images of Figure 2 and the estimator terms"),
                            ("figure_images", 500, "images of Figures 3-4")):
    flags.DEFINE_integer(name, None, f"Scale: {text} (default {default}).")
FLAGS = flags.FLAGS
SCALE = ("base_epochs", "hash_epochs", "adv_epochs", "adv_steps", "adv_warmup", "eps", "fast_images",
         "deepfool_images", "targeted_images", "bpda_images", "substitute_images", "zoo_images", "zoo_targeted_images",
         "zoo_queries", "cw_search_steps", "cw_iterations", "square_queries", "histogram_images", "figure_images")


def main(argv):
    from hashdef.experiments import reproduction

    existing = cli.parse_named_paths(FLAGS.use_model, "use_model")
    dataset = data.load_dataset(FLAGS.dataset, FLAGS.data_dir)
    plan = reproduction.plan_for(dataset.name, experiments=FLAGS.experiments,
                                 **{name: FLAGS[name].value for name in SCALE})
    work_dir = FLAGS.work_dir or os.path.join("runs", f"reproduce_hash_{dataset.name}")
    rep = reproduction.Reproduction(dataset, plan, work_dir, existing, log=lambda line: print(line, flush=True))
    cli.run_cells(rep, FLAGS)
    rep.report(FLAGS.docs_dir, cli.report_command("reproduce_hash.py"))
    print(f"wrote {os.path.join(FLAGS.docs_dir, f'reproduce_hash_{dataset.name}.md')}")


if __name__ == "__main__":
    cli.run(main)
