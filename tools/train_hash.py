"""Installs the defensive hash classifier on a trained model and retrains it (hash paper section III-C), resumable
per epoch, saving the model as .h5 + JSON sidecar.

    python tools/train_hash.py --base_model=runs/hash/base_hash_mnist.h5 --dataset=mnist --output=runs/hash/hash_mnist.h5
    python tools/train_hash.py --base_model=... --cr1=1/4096 --cr2=1/128 --epochs=3 --output=...

The last two fully connected layers of ``--base_model`` become hashed layers at (CR1, CR2) (default: the paper's
rule 1/16 (N1 M1)^-1/2, 2/N2); every other layer keeps its weights; the whole model is retrained ``--epochs``
(default 3) with the reference recipe. Without ``--base_model`` the undefended model of ``--arch`` (default the
paper's seven-layer ``hash_mnist``) is trained first for ``--base_epochs``. A killed run continues at its next epoch.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from hrs_tf import cli, data  # noqa: E402

flags.DEFINE_string("base_model", None, "The trained model to install the hashed classifier on (.h5).")
flags.DEFINE_string("cr1", None, "Compression rate of the first replaced layer, e.g. 1/4096 (default: the paper's rule).")
flags.DEFINE_string("cr2", None, "Compression rate of the second replaced layer, e.g. 1/128 (default: the paper's rule).")
flags.DEFINE_integer("hash_seed", 1691, "Seed of the xxHash32 index and sign hashes (the authors' 1691).")
flags.DEFINE_integer("base_epochs", 8, "Epochs of the undefended model when no --base_model is given.")
cli.define_data_flags()
cli.define_training_flags("Retraining epochs after the layers are replaced (paper: 3).")
cli.define_model_output_flag()
FLAGS = flags.FLAGS


def main(argv):
    from hashdef import hashing
    from hrs_tf import defenses
    from hrs_tf.defenses import making

    cli.model_output(FLAGS.output)
    given = {"cr1": FLAGS.cr1, "cr2": FLAGS.cr2}
    parts = [f"{key}={hashing.parse_rate(value)!r}" for key, value in given.items() if value is not None]
    if FLAGS.hash_seed != 1691:
        parts.append(f"hash_seed={FLAGS.hash_seed}")
    spec = defenses.parse("hash" + (":" + ",".join(parts) if parts else ""))
    epochs = cli.parse_epochs(FLAGS.epochs, default=3)
    settings = cli.training_settings(FLAGS)
    settings["arch"] = settings.get("arch") or ("hash_cifar10" if FLAGS.dataset == "cifar10" else "hash_mnist")
    dataset = data.load_dataset(FLAGS.dataset, FLAGS.data_dir)
    base_model = FLAGS.base_model
    if base_model is None:
        source = os.path.splitext(FLAGS.output)[0] + "_source.h5"
        if not os.path.exists(source):
            print(f"no --base_model: training the undefended {settings['arch']} model first -> {source}", flush=True)
            making.make("none", dataset, source, epochs=FLAGS.base_epochs, seed=FLAGS.seed, eval_repeats=1,
                        log=lambda line: print(line, flush=True), **settings)
        base_model = source
    print(f"{dataset.name}: defense {spec.text} ({spec.label}) on {base_model}, {epochs} retraining epochs", flush=True)
    command_line = {name: FLAGS[name].value for name in FLAGS if FLAGS[name].present}
    _, record = making.make(spec, dataset, FLAGS.output, base_model=base_model, epochs=epochs, seed=FLAGS.seed,
                            eval_repeats=1, log=lambda line: print(line, flush=True),
                            annotations={"command_line": command_line}, **settings)
    layers = ", ".join(f"{name} {v['virtual_shape'][0]}x{v['virtual_shape'][1]} K={v['num_buckets']}"
                       for name, v in record.get("hashed_layers", {}).items())
    print(f"{spec.label}: clean test accuracy {record['clean_accuracy']['mean']:.4f} ({layers}); wrote {FLAGS.output}")


if __name__ == "__main__":
    cli.run(main)
