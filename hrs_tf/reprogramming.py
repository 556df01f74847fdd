"""Adversarial reprogramming of a frozen target model (HRS paper section 7 and appendix E).

An attacker learns an *input transform* that makes a frozen target classifier (trained on task A) solve
task B, with the identity *output mapping* (class ``i`` of task B is read from logit ``i`` of the target).
As in the published code (``defend_adversarial_reprogramming.py``, REFERENCE section 1):

- transform = ``ZeroPadding2D`` -> :class:`LocallyConnected2D` (target-channels filters, ``k x k``, relu)
  -> ``tanh``; the padding is chosen so that the ``valid`` locally connected output has the target's
  spatial size (MNIST 28x28 -> CIFAR 32x32 with 3x3: padding 3; 28x28 -> 28x28 with 3x3: padding 1). An
  odd total padding (an even kernel) puts the extra row / column at the bottom / right;
- ``tanh`` of a ReLU output lies in ``[0, 1)`` (``1.0`` once float32 saturates), inside the targets'
  ``[0, 1]`` pixel range, so the output is fed to the target as is (the reference does the same; nothing
  is rescaled);
- the target is frozen and called in inference mode (the reference sets learning phase 0: train-time
  dropout is off), while the project's stochastic defense layers stay in ``random`` mode whatever the
  training flag: the defense is active while the attacker trains;
- SGD lr 0.01, momentum 0.9, Nesterov, Keras-2 decay 1e-6 per iteration, batch 128, softmax
  cross-entropy on the logits.

Reference bugs not copied: it trains on the first 600 training images (``percentage=0.01``) and feeds
integer labels to a one-hot loss. Here the whole source training set is used, with integer labels and
a sparse loss throughout.

Randomness: an HRS target in ``batch`` granularity draws one path per training mini-batch, as the
reference; accuracy is measured with every test image meeting its own randomness (an HRS target is
evaluated through a ``sample``-granularity copy, :func:`hrs_tf.hrs.with_granularity`; the other
stochastic layers draw per example anyway).

Training is resumable per epoch: after every epoch one checkpoint file (HDF5, written atomically) holds
the transform weights, the optimiser state, the states of the random generators, the history so far and
the settings; a rerun with the same settings continues after the last finished epoch (and may ask for
more epochs), a rerun with other settings is refused. Mini-batch order is a fixed function of
``(seed, epoch)``, so a resumed run reproduces an uninterrupted one.
"""

import hashlib
import json
import os
import time

import h5py
import keras
import numpy as np
import tensorflow as tf

from hrs_tf import fileio, hrs, metrics, stochastic, training
from hrs_tf.errors import ConfigError, ModelError
from hrs_tf.hrs_training import data_fingerprint
from hrs_tf.locally_connected import LocallyConnected2D

NUM_CLASSES = 10
OUTPUT_MAPPING = "identity"  # source class i -> target logit i, all 10 logits
CHECKPOINT_FORMAT = "hrs_tf.reprogramming/1"

# Settings that determine the result: a resume with any of them changed is refused. ``epochs`` is not
# among them: a finished run can be extended.
IDENTITY_KEYS = ("target", "target_fingerprint", "source_dataset", "train_fingerprint", "test_fingerprint",
                 "kernel_size", "batch_size", "learning_rate", "seed")


# --- the transform and the reprogrammed model ------------------------------------------------------


def _image_shape(shape, what):
    shape = tuple(shape)
    if len(shape) == 4 and shape[0] is None:
        shape = shape[1:]
    if len(shape) != 3 or not all(isinstance(d, (int, np.integer)) and d >= 1 for d in shape):
        raise ConfigError(f"{what} {shape} is not an image shape (height, width, channels)")
    return tuple(int(d) for d in shape)


def transform_padding(source_shape, target_shape, kernel_size=3):
    """``((top, bottom), (left, right))`` zero padding so that a ``valid`` k x k window maps source to target size.

    Raises ConfigError if the kernel is too small to shrink a larger source to the target size (the
    padding would be negative).
    """
    source_shape = _image_shape(source_shape, "source shape")
    target_shape = _image_shape(target_shape, "target shape")
    k = _kernel_size(kernel_size)
    padding = []
    for axis, (src, dst) in enumerate(zip(source_shape[:2], target_shape[:2])):
        total = dst - src + k - 1
        if total < 0:
            raise ConfigError(
                f"kernel_size={k} cannot map a {source_shape[0]}x{source_shape[1]} source onto a "
                f"{target_shape[0]}x{target_shape[1]} target: the padding would be {total} along "
                f"{'height' if axis == 0 else 'width'} (needs kernel_size >= {src - dst + 1})")
        padding.append((total // 2, total - total // 2))
    return tuple(padding)


def _kernel_size(kernel_size):
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, (int, np.integer)) or kernel_size < 1:
        raise ConfigError(f"kernel_size={kernel_size!r} must be a positive integer")
    return int(kernel_size)


def build_input_transform(source_shape, target_shape, kernel_size=3, name="input_transform"):
    """The reference input transform: ZeroPadding2D -> LocallyConnected2D(target channels, k x k, relu) -> tanh.

    Maps a ``source_shape`` image to a ``target_shape`` image with values in ``[0, 1]``.
    """
    source_shape = _image_shape(source_shape, "source shape")
    target_shape = _image_shape(target_shape, "target shape")
    k = _kernel_size(kernel_size)
    padding = transform_padding(source_shape, target_shape, k)
    return keras.Sequential([
        keras.Input(shape=source_shape),
        keras.layers.ZeroPadding2D(padding, name="padding"),
        LocallyConnected2D(target_shape[2], k, activation="relu", name="locally_connected"),
        keras.layers.Activation("tanh", name="tanh"),
    ], name=name)


def _check_target(target_model):
    if not isinstance(target_model, keras.Model) or not target_model.built:
        raise ModelError(f"the target must be a built Keras model, got {type(target_model).__name__}")
    try:
        input_shape, output_shape = target_model.input_shape, target_model.output_shape
    except (AttributeError, ValueError) as e:
        raise ModelError(f"target model {target_model.name!r} has no single input and output: {e}") from None
    if not isinstance(input_shape, tuple) or len(input_shape) != 4:
        raise ModelError(f"target model {target_model.name!r} takes inputs {input_shape}, not images (batch, height, width, channels)")
    if tuple(output_shape) != (None, NUM_CLASSES):
        raise ModelError(f"target model {target_model.name!r} outputs {tuple(output_shape)}; reprogramming with the "
                         f"identity output mapping needs {NUM_CLASSES} logits (None, {NUM_CLASSES})")
    return tuple(input_shape[1:])


def reprogram(target_model, transform, name=None):
    """The reprogrammed model ``target(transform(x))`` with the target frozen.

    Every target weight is made non-trainable (``target_model.trainable = False``: the target object is
    changed) and its stochastic layers are set to ``random`` mode. Call the result with
    ``training=False`` (as :func:`train_reprogramming` does): the target then runs in inference mode
    (train-time dropout off, as the reference's learning phase 0) while the defense stays random.
    The output mapping is the identity: logit ``i`` is source class ``i``.
    """
    target_shape = _check_target(target_model)
    if tuple(transform.output_shape[1:]) != target_shape:
        raise ModelError(f"the input transform outputs {tuple(transform.output_shape[1:])}, target model "
                         f"{target_model.name!r} takes {target_shape}")
    target_model.trainable = False
    stochastic.set_randomness(target_model, stochastic.RANDOM)
    inputs = keras.Input(shape=transform.input_shape[1:])
    outputs = target_model(transform(inputs))
    return keras.Model(inputs, outputs, name=name or f"reprogrammed_{target_model.name}")


def evaluation_target(target_model):
    """The target as accuracy is measured: every image its own randomness (HRS: a ``sample`` copy)."""
    if hrs.switches(target_model):
        return hrs.with_granularity(target_model, "sample")
    return target_model


# --- defended targets ------------------------------------------------------------------------------

SAP_VARIANTS = ("exact", "hrs")


def parse_defense(spec):
    """``"none"`` | ``"dropout:R"`` (test-time dropout rate R) | ``"sap"`` / ``"sap:exact"`` / ``"sap:hrs"``.

    Returns ``("none", None)``, ``("dropout", R)`` or ``("sap", variant)``; ConfigError otherwise.
    """
    text = str(spec).strip().lower()
    kind, _, arg = text.partition(":")
    if kind == "none" and not arg:
        return "none", None
    if kind == "dropout":
        try:
            rate = float(arg)
        except ValueError:
            raise ConfigError(f"defense {spec!r}: write dropout:R with the test-time rate R, e.g. dropout:0.3") from None
        if not 0.0 < rate < 1.0:
            raise ConfigError(f"defense {spec!r}: the test-time dropout rate must be in (0, 1)")
        return "dropout", rate
    if kind == "sap":
        variant = arg or "exact"
        if variant not in SAP_VARIANTS:
            raise ConfigError(f"defense {spec!r}: the SAP variant must be one of {', '.join(SAP_VARIANTS)}")
        return "sap", variant
    raise ConfigError(f"unknown defense {spec!r}; use none, dropout:R (e.g. dropout:0.3), sap, sap:exact or sap:hrs")


def apply_defense(model, spec, seed=None):
    """``model`` wrapped in the defense ``spec`` (:func:`parse_defense`) without retraining.

    ``dropout:R`` replaces the train-time dropout after FC1 by dropout that stays on at test time with rate R
    (:func:`hrs_tf.baselines.with_defensive_dropout`); ``sap`` inserts SAP between FC1 and FC2
    (:func:`hrs_tf.baselines.with_sap`). ``none`` returns ``model`` itself.
    """
    kind, arg = parse_defense(spec)
    if kind == "none":
        return model
    from hrs_tf import baselines

    if kind == "dropout":
        return baselines.with_defensive_dropout(model, arg, seed=seed)
    return baselines.with_sap(model, arg, seed=seed)


# --- fingerprints and checkpoint -------------------------------------------------------------------


def weights_fingerprint(model):
    """SHA-1 of every weight of ``model`` (shapes and values), to recognise the same target on resume."""
    digest = hashlib.sha1()
    for w in model.get_weights():
        w = np.ascontiguousarray(w)
        digest.update(str((w.dtype.str, w.shape)).encode())
        digest.update(w.tobytes())
    return digest.hexdigest()


def _seed_states(*models):
    """The state variables of every random generator in ``models`` (each counted once)."""
    found, seen = [], set()
    for model in models:
        for v in model.variables:
            if v.path.endswith("seed_generator_state") and id(v) not in seen:
                seen.add(id(v))
                found.append(v)
    return found


def _write_checkpoint(path, state, transform, optimizer, seed_states):
    with fileio.atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = CHECKPOINT_FORMAT
            f.attrs["state"] = json.dumps(state, sort_keys=True)
            for group, values in (("transform", transform.get_weights()),
                                  ("optimizer", [np.asarray(v.numpy()) for v in optimizer.variables]),
                                  ("seed_states", [np.asarray(v.numpy()) for v in seed_states])):
                g = f.create_group(group)
                for i, value in enumerate(values):
                    g.create_dataset(str(i), data=value)


def read_checkpoint(path):
    """``(state, {"transform": [...], "optimizer": [...], "seed_states": [...]})`` of a checkpoint file."""
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != CHECKPOINT_FORMAT:
                raise ModelError(f"{path!r} is not a reprogramming checkpoint (format {f.attrs.get('format')!r})")
            state = json.loads(f.attrs["state"])
            arrays = {group: [np.asarray(f[group][str(i)]) for i in range(len(f[group]))]
                      for group in ("transform", "optimizer", "seed_states")}
    except (OSError, KeyError, ValueError) as e:
        raise ModelError(f"cannot read reprogramming checkpoint {path!r}: {' '.join(str(e).split())}") from None
    return state, arrays


def _restore(path, settings, transform, optimizer, seed_states):
    """Loads a checkpoint into the objects after checking its settings; returns its state."""
    state, arrays = read_checkpoint(path)
    changed = [k for k in IDENTITY_KEYS if state["settings"].get(k) != settings.get(k)]
    if changed:
        detail = ", ".join(f"{k}: {state['settings'].get(k)!r} there vs {settings.get(k)!r} now" for k in changed)
        raise ConfigError(f"checkpoint {path!r} holds a reprogramming run with other settings ({detail}); "
                          "use another output or the original settings to resume")
    if state["epoch"] > settings["epochs"]:
        raise ConfigError(f"checkpoint {path!r} already holds {state['epoch']} epochs, more than epochs={settings['epochs']}")
    current = {"transform": transform.weights, "optimizer": optimizer.variables, "seed_states": seed_states}
    for group, variables in current.items():
        if [tuple(v.shape) for v in variables] != [a.shape for a in arrays[group]]:
            raise ModelError(f"checkpoint {path!r}: the saved {group} state does not fit this run")
    for group, variables in current.items():
        for v, a in zip(variables, arrays[group]):
            v.assign(a)
    return state


# --- training --------------------------------------------------------------------------------------


def _train_step_function(model, variables, optimizer):
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    spec = model.input_shape[1:]

    @tf.function(input_signature=[tf.TensorSpec((None,) + tuple(spec), tf.float32), tf.TensorSpec((None,), tf.int64)])
    def step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=False)  # target in inference mode; stochastic layers stay random
            loss = loss_fn(y, logits)
        gradients = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(gradients, variables))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=-1), y), tf.float32))
        return loss, correct

    return step


def epoch_order(seed, epoch, n):
    """The mini-batch order of epoch ``epoch`` (1-based): a fixed permutation of ``range(n)``."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def train_reprogramming(target_model, source, epochs, kernel_size=3, batch_size=training.REFERENCE_BATCH_SIZE,
                        learning_rate=training.REFERENCE_LEARNING_RATE, seed=0, checkpoint_path=None,
                        target_description=None, eval_batch_size=500, verbose=1):
    """Reprograms the frozen ``target_model`` to classify ``source`` (an :class:`hrs_tf.data.Dataset`).

    Trains the input transform of :func:`build_input_transform` for ``epochs`` epochs over the whole
    source training set (mini-batches of ``batch_size``, integer labels, sparse softmax cross-entropy,
    reference SGD) and measures the reprogrammed model's accuracy on the source test set after every
    epoch (and once before training). With ``checkpoint_path`` the run is resumable per epoch (see the
    module docstring). ``target_description`` names the target in the record and in the resume check
    (default: the model's name).

    Returns ``(transform, record)``; ``record`` is JSON-ready: settings, per-epoch ``history`` (train loss
    and accuracy, test accuracy, seconds), ``test_accuracy`` after the last epoch, timings and versions.
    """
    training.check_training_settings(epochs, batch_size, learning_rate)
    epochs, batch_size, seed = int(epochs), int(batch_size), int(seed)
    kernel_size = _kernel_size(kernel_size)
    target_shape = _check_target(target_model)
    transform_padding(source.input_shape, target_shape, kernel_size)  # ConfigError before any work
    settings = {
        "target": target_description or target_model.name,
        "target_fingerprint": weights_fingerprint(target_model),
        "source_dataset": source.name,
        "train_fingerprint": data_fingerprint(source.x_train, source.y_train),
        "test_fingerprint": data_fingerprint(source.x_test, source.y_test),
        "kernel_size": kernel_size,
        "batch_size": batch_size,
        "learning_rate": float(learning_rate),
        "seed": seed,
        "epochs": epochs,
    }

    keras.utils.set_random_seed(seed)
    transform = build_input_transform(source.input_shape, target_shape, kernel_size)
    model = reprogram(target_model, transform)
    eval_model = reprogram(evaluation_target(target_model), transform, name=f"{model.name}_evaluation")
    if {id(v) for v in model.trainable_variables} != {id(v) for v in transform.trainable_variables}:
        raise ModelError(f"target model {target_model.name!r} still has trainable weights after freezing")
    variables = transform.trainable_variables
    optimizer = training.reference_optimizer(learning_rate)
    optimizer.build(variables)
    seed_states = _seed_states(model, eval_model)
    x_test, y_test = source.x_test, source.y_test

    state = {"settings": settings, "epoch": 0, "history": [], "initial_test_accuracy": None, "train_seconds": 0.0}
    resumed_from = 0
    if checkpoint_path and os.path.exists(checkpoint_path):
        state = _restore(checkpoint_path, settings, transform, optimizer, seed_states)
        state["settings"] = settings
        resumed_from = state["epoch"]
        if verbose:
            print(f"resuming from {checkpoint_path} after epoch {resumed_from}/{epochs}", flush=True)
    if state["initial_test_accuracy"] is None:
        state["initial_test_accuracy"] = metrics.accuracy(eval_model, x_test, y_test, eval_batch_size)
        if verbose:
            print(f"epoch 0/{epochs}: test accuracy {state['initial_test_accuracy']:.4f} (untrained transform)", flush=True)

    step = _train_step_function(model, variables, optimizer)
    x_train, y_train = source.x_train, np.asarray(source.y_train, np.int64)
    n = len(x_train)
    for epoch in range(state["epoch"] + 1, epochs + 1):
        start = time.time()
        order = epoch_order(seed, epoch, n)
        total_loss, total_correct = 0.0, 0.0
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            loss, correct = step(tf.constant(x_train[idx]), tf.constant(y_train[idx]))
            total_loss += float(loss) * len(idx)
            total_correct += float(correct)
        train_seconds = time.time() - start
        test_accuracy = metrics.accuracy(eval_model, x_test, y_test, eval_batch_size)
        record = {"epoch": epoch, "loss": total_loss / n, "train_accuracy": total_correct / n,
                  "test_accuracy": test_accuracy, "seconds": round(time.time() - start, 3)}
        state["history"].append(record)
        state["epoch"] = epoch
        state["train_seconds"] = round(state["train_seconds"] + train_seconds, 3)
        if checkpoint_path:
            _write_checkpoint(checkpoint_path, state, transform, optimizer, seed_states)
        if verbose:
            print(f"epoch {epoch}/{epochs}: loss {record['loss']:.4f}, train accuracy {record['train_accuracy']:.4f}, "
                  f"test accuracy {test_accuracy:.4f} ({record['seconds']:.0f} s)", flush=True)

    history = state["history"]
    record = {
        "kind": "reprogramming",
        **settings,
        "data_source": source.source,
        "num_train": int(n),
        "num_test": int(len(x_test)),
        "source_shape": list(source.input_shape),
        "target_shape": list(target_shape),
        "padding": [list(p) for p in transform_padding(source.input_shape, target_shape, kernel_size)],
        "transform_params": int(sum(np.prod(w.shape) for w in transform.weights)),
        "output_mapping": OUTPUT_MAPPING,
        "optimizer": f"SGD(lr={float(learning_rate)}, momentum={training.REFERENCE_MOMENTUM}, nesterov=True, "
                     f"inverse-time decay {training.REFERENCE_DECAY}/iteration)",
        "loss": "sparse softmax cross-entropy on the target's logits",
        "stochastic_layers": sorted({type(layer).__name__ for layer in stochastic.stochastic_layers(target_model)}),
        "hrs_channels": hrs.channel_counts(target_model),
        "evaluation": "each test image its own randomness" + (" (HRS: sample-granularity copy)" if hrs.switches(target_model) else ""),
        "initial_test_accuracy": state["initial_test_accuracy"],
        "history": history,
        "test_accuracy": history[-1]["test_accuracy"],
        "best_test_accuracy": max(h["test_accuracy"] for h in history),
        "resumed_from_epoch": resumed_from,
        "train_seconds": state["train_seconds"],
        "versions": training.versions(),
    }
    return transform, record


# --- reporting -------------------------------------------------------------------------------------


def curve_label(record):
    """A short name of the defended target of a reprogramming record (``base``, ``dropout 0.3``, ``HRS 5x5``...)."""
    if record.get("hrs_channels"):
        return "HRS " + "x".join(map(str, record["hrs_channels"]))
    kind, arg = parse_defense(record.get("target_defense", "none"))
    if kind == "dropout":
        return f"dropout {arg:g}"
    if kind == "sap":
        return f"SAP ({arg})"
    if "GaussianNoiseInjection" in record.get("stochastic_layers", []):
        return "Gaussian"
    return "base"


def _reprogramming_records(records):
    return [r for r in records if r.get("kind") == "reprogramming"]


def curves_plot(records, path, title="Adversarial reprogramming"):
    """PNG of the test accuracy of every record over training epochs (epoch 0: the untrained transform)."""
    from hrs_tf import reporting

    series = {}
    for r in _reprogramming_records(records):
        series[curve_label(r)] = ([0] + [h["epoch"] for h in r["history"]],
                                  [r["initial_test_accuracy"]] + [h["test_accuracy"] for h in r["history"]])
    reporting.plot_lines(path, series, "reprogramming epoch", "test accuracy (source task)", title, ylim=(0, 1))


def curves_table(records, epochs=(1, 5, 10)):
    """Markdown table: reprogramming test accuracy after selected epochs, the last and the best epoch."""
    from hrs_tf import reporting

    rows = []
    for r in _reprogramming_records(records):
        by_epoch = {h["epoch"]: h["test_accuracy"] for h in r["history"]}
        seconds = sorted(h["seconds"] for h in r["history"])
        rows.append([curve_label(r), reporting.percent(r["initial_test_accuracy"])]
                    + [reporting.percent(by_epoch[e]) if e in by_epoch else "-" for e in epochs]
                    + [f"{reporting.percent(r['test_accuracy'])} ({len(r['history'])})",
                       reporting.percent(r["best_test_accuracy"]), f"{seconds[len(seconds) // 2]:.0f} s"])
    headers = (["target", "untrained"] + [f"epoch {e}" for e in epochs]
               + ["last epoch (n)", "best epoch", "median epoch time"])
    return reporting.markdown_table(headers, rows)


def report_markdown(records, plot_path, command, epochs=(1, 5, 10)):
    """The reprogramming report (HRS paper Figure 6 style): per source task, the runs' settings, the accuracy
    table and the curve plot (written beside ``plot_path``, one PNG per task), and the command that made it."""
    from hrs_tf import reporting

    records = _reprogramming_records(records)
    if not records:
        raise ConfigError("no reprogramming records (JSON files written by tools/reprogram.py) were given")
    tasks = {}
    for r in records:
        tasks.setdefault(r["source_dataset"], []).append(r)
    parts = [f"Made by: `{command}`", ""]
    stem, ext = os.path.splitext(plot_path)
    for source, group in tasks.items():
        path = plot_path if len(tasks) == 1 else f"{stem}_{source}{ext}"
        curves_plot(group, path, title=f"Adversarial reprogramming to {source}")
        first = group[0]
        rows = [[curve_label(r), r["target_model"], r["kernel_size"], r["num_train"], r["seed"]] for r in group]
        parts += [
            f"### Reprogrammed to classify {source}", "",
            f"Identity output map, {first['kernel_size']}x{first['kernel_size']} locally connected input transform; "
            f"test accuracy over {first['num_test']} test images, {first['evaluation']}.", "",
            reporting.markdown_table(["target", "frozen model", "kernel", "train images", "seed"], rows), "",
            curves_table(group, epochs), "",
            f"![reprogramming to {source}]({os.path.basename(path)})", ""]
    return "\n".join(parts)
