"""Shared plumbing of the absl scripts in ``tools/``: error reporting, the flags several tools share, and the
registry listings.

- :func:`run` prints an :class:`HrsError` as one line and exits with status 2 (never a traceback for a
  user's mistake); ``--list_defenses`` / ``--list_attacks`` print the registry listings and exit;
- :func:`define_data_flags`, :func:`define_training_flags` and :func:`define_attack_flags` define the flags of
  the data set, of the reference training recipe and of every declared attack's settings (generated from
  the attack declarations, :mod:`hrs_tf.attacks.registry`), once for every tool that takes them;
  :func:`define_executor_flags` / :func:`executor` those of where an experiment's cells run;
- :func:`load_model` loads a model file and, with a defense spec, makes the defended model from it.
"""

import os
import shlex
import sys

from absl import app, flags

from hrs_tf.errors import ConfigError, HrsError

LISTINGS = {"--list_defenses": "defenses", "--list_attacks": "attacks"}
# Modules whose flags ``--helpfull`` does not list: TensorFlow's internal switches and absl's test runner, which the
# imports define but no tool reads (they are still accepted).
HIDDEN_FLAG_MODULES = ("tensorflow.", "absl.testing")


def full_help(values=None):
    """``--helpfull``'s text without the flags of :data:`HIDDEN_FLAG_MODULES`: the tool's own flags and absl's."""
    values = flags.FLAGS if values is None else values
    modules = [m for m in sorted(values.flags_by_module_dict()) if not m.startswith(HIDDEN_FLAG_MODULES)]
    hidden = sum(len(f) for m, f in values.flags_by_module_dict().items() if m.startswith(HIDDEN_FLAG_MODULES))
    text = "\n\n".join(values.module_help(m) for m in modules)
    return text + f"\n\n({hidden} flags TensorFlow and absl's test runner define are not listed.)"


def run(main):
    """``absl.app.run(main)``, printing an :class:`HrsError` as one line and exiting with status 2."""
    for flag, what in LISTINGS.items():
        if flag in sys.argv[1:]:
            print(listing(what))
            sys.exit(0)
    if "--helpfull" in sys.argv[1:]:
        print(full_help())
        sys.exit(0)

    def guarded(argv):
        from hrs_tf import quiet

        quiet.quiet_tool_logs()
        if len(argv) > 1:
            print(f"error: unexpected positional arguments {argv[1:]} (all settings are --flags)", file=sys.stderr)
            sys.exit(2)
        try:
            return main(argv)
        except HrsError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    app.run(guarded)


def listing(what):
    """The markdown listing of the registered ``defenses`` or declared ``attacks``."""
    if what == "defenses":
        from hrs_tf import defenses

        return defenses.listing()
    from hrs_tf import attacks

    return attacks.registry.listing()


def define_listing_flags(*what):
    """``--list_defenses`` / ``--list_attacks``: print the registry listing and exit (handled by :func:`run`)."""
    for name in what:
        flags.DEFINE_bool(f"list_{name}", False, f"Print every registered {name[:-1]} ({name} listing) and exit.")


def define_data_flags(dataset="mnist"):
    from hrs_tf import data

    flags.DEFINE_string("dataset", dataset, f"Data set: {', '.join(data.DATASETS)}.")
    flags.DEFINE_string("data_dir", None, f"Folder holding the data set (else ${data.DATA_DIR_ENV}, the Keras cache, download).")


def define_model_output_flag(text="Output model path (.h5); a JSON sidecar is written beside it."):
    """``--output``, required: the .h5 file a training tool writes (checked by :func:`model_output`)."""
    flags.DEFINE_string("output", None, text)
    flags.mark_flag_as_required("output")


def model_output(path):
    """``path`` if it names an .h5 file (the format every saved model of this project uses); ConfigError otherwise."""
    if not path.endswith(".h5"):
        raise ConfigError(f"--output={path!r} must end in .h5")
    return path


def define_executor_flags():
    """``--executor`` (local / ray), ``--ray_address``, ``--ray_workers``, ``--ray_threads``: where an experiment's
    cells run (:mod:`hrs_tf.experiments.execution`)."""
    flags.DEFINE_enum("executor", "local", ["local", "ray"], "Where the cells run: local (in this process, in order) or "
                      "ray (Ray tasks in parallel; needs pip install -r requirements-ray.txt).")
    flags.DEFINE_string("ray_address", None, "With --executor=ray: an existing Ray cluster ('auto' or host:port); "
                        "default: start a local Ray instance on this machine for the run.")
    flags.DEFINE_integer("ray_workers", None, "With --executor=ray and no --ray_address: CPUs of the local Ray instance "
                         "(cells at once; default: this machine's cores).")
    flags.DEFINE_integer("ray_threads", None, "With --executor=ray: TensorFlow threads per worker (default: the CPUs "
                         "its cell reserves, 1; the local process's count gives bit-identical results).")

    def valid(values):  # checked when the flags are parsed: a bad setting stops the tool before any work
        from hrs_tf.experiments.execution import check_executor

        try:
            check_executor(values["executor"], values["ray_address"], values["ray_workers"], values["ray_threads"])
        except ConfigError as e:
            raise flags.ValidationError(str(e)) from None
        return True

    flags.register_multi_flags_validator(["executor", "ray_address", "ray_workers", "ray_threads"], valid)


def define_study_flags(work_dir_help, required=False, docs_help="Where the report and its plots are written."):
    """What every resumable study tool shares: ``--work_dir`` (its cells; ``required`` or defaulted by the tool),
    ``--docs_dir``, ``--report_only`` (read by :func:`run_cells`) and the executor flags."""
    flags.DEFINE_string("work_dir", None, work_dir_help)
    if required:
        flags.mark_flag_as_required("work_dir")
    flags.DEFINE_string("docs_dir", "docs", docs_help)
    flags.DEFINE_bool("report_only", False, "Only rebuild the report from the cells computed so far.")
    define_executor_flags()


def executor(values, log=print):
    """The executor the flags of :func:`define_executor_flags` ask for (``values``: FLAGS)."""
    from hrs_tf.experiments.execution import make_executor

    return make_executor(values.executor, values.ray_address, values.ray_workers, values.ray_threads, log=log)


def run_cells(experiment, values):
    """Computes ``experiment``'s missing cells on the executor ``values`` choose (``--executor`` ...), unless
    ``--report_only``; returns what its ``run`` returns (None with ``--report_only``)."""
    if values.report_only:
        return None
    chosen = executor(values)
    try:
        return experiment.run(executor=chosen)
    finally:
        chosen.close()


def report_command(tool, argv=None):
    """The command a report shows at its top: ``python tools/<tool>`` and the arguments that computed its cells
    (``--report_only`` left out, arguments quoted for a POSIX shell where they hold a space, ``;`` or another
    character the shell would read: the line pastes as is)."""
    argv = sys.argv[1:] if argv is None else argv
    shown = [a for a in argv if not a.startswith("--report_only")]
    return f"python tools/{tool} " + " ".join(shlex.quote(a) for a in shown)


def define_training_flags(epochs_help="Training epochs (default: the defense's reference value)."):
    """The reference recipe's settings: architecture, train-time dropout, epochs, batch size, learning rate, seed."""
    from hrs_tf import training

    flags.DEFINE_string("arch", None, "Architecture: mnist, cifar10, rs_mnist or one a plug-in registers, e.g. hash_mnist (default: the data set's own).")
    flags.DEFINE_float("dropout_rate", None, "Train-time dropout after FC1 (default: 0.3 MNIST, 0.7 CIFAR-10).")
    flags.DEFINE_list("epochs", None, epochs_help)
    flags.DEFINE_integer("batch_size", training.REFERENCE_BATCH_SIZE, "Mini-batch size.")
    flags.DEFINE_float("learning_rate", training.REFERENCE_LEARNING_RATE, "SGD learning rate.")
    flags.DEFINE_integer("seed", 0, "Random seed (weights, shuffling, dropout, noise).")


def training_settings(values):
    """The keyword settings of a trainer from the flags of :func:`define_training_flags` (``values``: FLAGS)."""
    settings = {"arch": values.arch, "dropout_rate": values.dropout_rate, "batch_size": values.batch_size,
                "learning_rate": values.learning_rate}
    return {k: v for k, v in settings.items() if v is not None}


def parse_epochs(items, default=None):
    """``--epochs`` as given (one value, or one per HRS block) -> an int or a list of ints; ``default`` if unset."""
    from hrs_tf import checks

    if not items:
        return default
    values = [checks.count(item, "epochs", minimum=1) for item in items]
    return values[0] if len(values) == 1 else values


def define_attack_flags(flag_values=None):
    """One flag per setting of any declared attack (None = the attack's default), typed as declared, plus
    ``--loss`` and ``--backend``; on absl's ``FLAGS`` unless ``flag_values`` is given."""
    where = {"flag_values": flags.FLAGS if flag_values is None else flag_values}
    from hrs_tf.attacks import registry

    for name, parameter in sorted(registry.all_parameters().items()):
        kind = registry.flag_type(parameter)
        help_text = parameter.help + (" (L2 attacks: an L2 radius)" if name == "eps" else "")
        {"text": flags.DEFINE_string, "int": flags.DEFINE_integer, "float": flags.DEFINE_float,
         "bool": flags.DEFINE_bool}[kind](name, None, help_text, **where)
    from hrs_tf.attacks import backends, losses

    flags.DEFINE_enum("loss", None, list(losses.LOSSES), "Loss of a gradient attack that takes a loss_fn (unset: "
                      "the attack's own); bpda_sigmoid = the hash paper's BPDA (sigmoid in place of the softmax).",
                      **where)
    flags.DEFINE_enum("backend", None, list(backends.BACKENDS), "Implementation of fgsm / bim / mim / pgd: ours or "
                      "cleverhans (CleverHans 4.0.0, white-box only: refused under EOT, fixed randomness and BPDA).",
                      **where)


def attack_settings(attack, values):
    """The checked settings of ``attack`` given on the command line (flags of :func:`define_attack_flags`)."""
    from hrs_tf.attacks import registry

    from hrs_tf.attacks import losses, settings

    given = {name: values[name].value for name in registry.all_parameters() if values[name].present}
    declared = registry.get(attack)
    chosen = declared.parse_settings(given)
    for flag, keyword, value in (("loss", "loss_fn", values["loss"].value and losses.get(values["loss"].value)),
                                 ("backend", "backend", values["backend"].value)):
        if value is None:
            continue
        if not settings.accepts(declared.call, keyword):
            raise ConfigError(f"attack {attack!r} takes no --{flag}")
        chosen[keyword] = value
    return chosen


def load_model(path, defense=None, seed=None, dataset=None):
    """The model in ``path``; with a defense spec, the defended model made from it without training (a wrapped
    defense, a weight transform, a subset); ConfigError for a defense that must be trained. With ``dataset``,
    ModelError unless the model takes its images and outputs its classes (:func:`evaluation.check_model_fits`)."""
    from hrs_tf import defenses
    from hrs_tf.models import serialization

    model = serialization.load_model(path)
    if dataset is not None:
        from hrs_tf.evaluation.protocol import check_model_fits

        check_model_fits(model, dataset)
    if defense is None:
        return model
    spec = defenses.parse(defense)
    if spec.text == defenses.UNDEFENDED:
        return model
    if spec.source() is None or spec.make == defenses.INSTALLED:
        raise ConfigError(f"defense {spec.text!r} is {spec.make}; train it (tools/train_baseline.py) and give the "
                          "trained model without --defense")
    return spec.apply(model, seed=seed)


def parse_named_paths(items, flag="use_model"):
    """``{name: path}`` from ``NAME=PATH`` items of a multi-string flag (every path must exist)."""
    named = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--{flag}={item!r} must be NAME=PATH")
        if not os.path.exists(path):
            raise ConfigError(f"--{flag}: {path!r} does not exist")
        named[name] = path
    return named
