"""Bottom-up HRS training (HRS paper appendix B, Algorithm 1), resumable after a kill.

For block ``b`` and channel ``c`` a model is built from

- the already trained blocks ``0 .. b-1`` as frozen :class:`RandomSwitch` layers, batch granularity,
  re-drawn every mini-batch (their dropout stays active in training: freezing does not switch it off);
- a fresh channel of block ``b`` and fresh single channels of the blocks above it,

and trained with the reference recipe; the block-``b`` channel is kept, the temporary upper part
discarded. Block-0 channels are thus fresh full base models trained to the end.

Output directory::

    run.json            settings of the run (a resume must match them)
    progress.json       finished channels: test accuracy, epochs, seconds
    channels/<b>_<c>.h5 per-channel weights, Keras-2 weights layout (as the published repo)
    channels/<b>_<c>.checkpoint.h5  the channel in training: written after every epoch, removed when it is done
    hrs_model.h5        the complete HRS model (``keras.models.load_model`` after ``import hrs_tf``)
    summary.json        per-channel accuracy, HRS accuracy (sample mode, repeated), timings, versions

Every channel file is written atomically as soon as its channel is finished, and the channel in training is
checkpointed after every epoch; a rerun of the same command skips finished channels and continues the unfinished one
at its next epoch. Each channel trains from its own seed (derived from the run seed, block and channel), each epoch
from (channel seed, epoch), so a resumed run produces the same model as an uninterrupted one.
"""

import os
import shutil

import keras
import numpy as np

from hrs_tf import checks, fileio, models, training
from hrs_tf.defenses.hrs import model as hrs
from hrs_tf.errors import ConfigError
from hrs_tf.evaluation import metrics
from hrs_tf.layers.random_switch import RandomSwitch
from hrs_tf.models import serialization
from hrs_tf.training import fine_tuning
from hrs_tf.training.checkpoint import data_fingerprint

RUN_FILE = "run.json"
PROGRESS_FILE = "progress.json"
CHANNEL_DIR = "channels"
MODEL_FILE = "hrs_model.h5"
SUMMARY_FILE = "summary.json"

# Settings that determine the trained weights: a resume with any of them changed is refused.
IDENTITY_KEYS = ("dataset", "train_fingerprint", "architecture", "dropout_rate", "channels", "epochs",
                 "batch_size", "learning_rate", "seed", "epoch_order")
# How a channel's epochs are ordered. Runs made before 2026-11-30 have no such setting: one Keras ``fit`` call per
# channel saw its batches in the same order every epoch (see :func:`hrs_tf.training.start_epoch`); they are not
# resumed or reused by this code, whose channels would not match theirs.
EPOCH_ORDER = "reshuffled per epoch from (channel seed, epoch)"


def channel_seed(seed, block, channel):
    """The training seed of one channel, a fixed function of (run seed, block, channel)."""
    return int(np.random.SeedSequence([int(seed), int(block), int(channel)]).generate_state(1)[0] % (2**31 - 1))


def channel_path(output_dir, block, channel):
    return os.path.join(output_dir, CHANNEL_DIR, f"{block}_{channel}.h5")


def parse_epochs(epochs, num_blocks):
    """Epochs per block from a list (or a single value for every block); ConfigError if invalid."""
    try:
        epochs = [int(e) for e in (epochs if isinstance(epochs, (list, tuple)) else [epochs])]
    except ValueError:
        raise ConfigError(f"epochs {epochs!r} must be whole numbers, one per block") from None
    if len(epochs) == 1:
        epochs = epochs * num_blocks
    if len(epochs) != num_blocks:
        raise ConfigError(f"epochs {epochs} must give one value per block ({num_blocks} blocks) or a single value")
    if min(epochs) < 1:
        raise ConfigError(f"epochs {epochs} must all be at least 1")
    return epochs


def _check_resume(output_dir, run):
    path = os.path.join(output_dir, RUN_FILE)
    if not os.path.exists(path):
        fileio.write_json(path, run)
        return False
    previous = fileio.read_json(path)
    fileio.check_same_settings(previous, run, IDENTITY_KEYS, f"{output_dir!r} holds an HRS run",
                               "use a new --output_dir or the original settings to resume")
    return True


def _reusable_block0(source_dir, run):
    """The finished block-0 channel records of ``source_dir`` if its settings allow reuse; else ConfigError."""
    source_run_path = os.path.join(source_dir, RUN_FILE)
    if not os.path.isfile(source_run_path):
        raise ConfigError(f"cannot reuse channels: {source_dir!r} holds no HRS run ({RUN_FILE} missing)")
    source = fileio.read_json(source_run_path)
    differ = [k for k in IDENTITY_KEYS if k not in ("channels", "epochs") and source.get(k) != run.get(k)]
    if len(source["channels"]) != len(run["channels"]):
        differ.append("number of blocks")
    if source["epochs"][0] != run["epochs"][0]:
        differ.append("block-0 epochs")
    if differ:
        raise ConfigError(f"cannot reuse block-0 channels of {source_dir!r}: its {', '.join(differ)} differ from this run")
    progress_path = os.path.join(source_dir, PROGRESS_FILE)
    finished = fileio.read_json(progress_path)["channels"] if os.path.exists(progress_path) else {}
    return {key: record for key, record in finished.items()
            if key.startswith("0_") and os.path.exists(channel_path(source_dir, 0, int(key[2:])))}


def reuse_block0_channels(output_dir, source_dir, run, progress, log=print):
    """Copies finished block-0 channels of the run in ``source_dir`` into this run; returns their count.

    A block-0 channel is a full base model trained from its own seed (run seed, 0, channel): it does not
    depend on how many channels the run has. So a 10x10 run can take channels 0-4 of block 0 verbatim from a
    5x5 run with otherwise equal settings (same data, architecture, dropout, number of blocks, block-0 epochs,
    batch size, learning rate, seed); anything else is refused.
    """
    finished = _reusable_block0(source_dir, run)
    copied = 0
    for c in range(run["channels"][0]):
        key = f"0_{c}"
        if key in progress["channels"] or key not in finished:
            continue
        with fileio.atomic_path(channel_path(output_dir, 0, c)) as tmp:
            shutil.copyfile(channel_path(source_dir, 0, c), tmp)
        progress["channels"][key] = dict(finished[key], reused_from=os.path.abspath(source_dir))
        fileio.write_json(os.path.join(output_dir, PROGRESS_FILE), progress)
        copied += 1
        log(f"[block 1, channel {c + 1}] reused from {source_dir} (test accuracy {finished[key]['test_accuracy']:.4f})")
    return copied


def _trained_switch(arch, layer_names, output_dir, block, count, dropout_rate, seed):
    """Frozen switching block ``block`` built from its finished channel files."""
    channels = []
    for c in range(count):
        channel = models.build_block(arch, layer_names, hrs.channel_name(block, c), dropout_rate)
        serialization.load_legacy_weights(channel, channel_path(output_dir, block, c))
        channels.append(channel)
    switch = RandomSwitch(channels, granularity="batch", seed=seed, name=f"switch{block}")
    switch.trainable = False
    return switch


def build_channel_model(arch, run, output_dir, block, channel, seed):
    """The model that trains channel ``channel`` of block ``block`` (Algorithm 1, lines 3-11).

    Returns ``(model, new_channel)``: trained blocks below as frozen batch-granularity switches, the new
    channel, and fresh temporary blocks above it.
    """
    ranges = models.block_ranges(arch, len(run["channels"]), run["dropout_rate"])
    inputs = keras.Input(shape=arch.input_shape)
    h = inputs
    for lower in range(block):
        h = _trained_switch(arch, ranges[lower], output_dir, lower, run["channels"][lower], run["dropout_rate"],
                            seed=seed + lower + 1)(h)
    new_channel = models.build_block(arch, ranges[block], hrs.channel_name(block, channel), run["dropout_rate"])
    h = new_channel(h)
    for upper in range(block + 1, len(ranges)):
        h = models.build_block(arch, ranges[upper], f"temporary_block{upper}", run["dropout_rate"])(h)
    return keras.Model(inputs, h, name=f"train_{block}_{channel}"), new_channel


def _train_channel(dataset, arch, run, output_dir, block, channel, verbose, log):
    """Trains channel ``channel`` of block ``block`` and saves it (Algorithm 1, lines 3-13), one epoch at a time with
    a checkpoint after each (:func:`hrs_tf.training.fine_tuning.fine_tune`), so a kill loses at most one epoch."""
    seed = channel_seed(run["seed"], block, channel)
    keras.utils.set_random_seed(seed)
    model, new_channel = build_channel_model(arch, run, output_dir, block, channel, seed)
    history = fine_tuning.fine_tune(
        model, dataset, run["epochs"][block], fine_tuning.checkpoint_path(channel_path(output_dir, block, channel)),
        batch_size=run["batch_size"], learning_rate=run["learning_rate"], seed=seed, verbose=verbose, log=log,
        what=f"block {block + 1} channel {channel + 1}", identity={"block": block, "channel": channel})
    serialization.save_legacy_weights(new_channel, channel_path(output_dir, block, channel))
    return {"block": block, "channel": channel, "seed": seed, "epochs": run["epochs"][block],
            "train_accuracy": history[-1]["accuracy"], "test_accuracy": history[-1]["test_accuracy"],
            "seconds": round(sum(h["seconds"] for h in history), 1)}


def assemble_hrs_model(output_dir, arch, channels, dropout_rate=None, granularity="batch", seed=None):
    """The HRS model made of the finished channel files of ``output_dir``."""
    model = hrs.build_hrs_model(arch, channels, granularity=granularity, seed=seed, dropout_rate=dropout_rate)
    for b, count in enumerate(channels):
        for c in range(count):
            hrs.set_channel_weights(model, b, c, channel_path(output_dir, b, c))
    return model


def path_accuracies(model, x, y, max_paths=100):
    """Test accuracy of every fixed path (if there are at most ``max_paths``), keyed ``"c0-c1"``."""
    counts = hrs.channel_counts(model)
    if int(np.prod(counts)) > max_paths:
        return {}
    result = {}
    for path in np.ndindex(*counts):
        result["-".join(map(str, path))] = metrics.accuracy(hrs.path_model(model, path), x, y)
    return result


def run_settings(dataset, channels, epochs, arch=None, batch_size=training.REFERENCE_BATCH_SIZE,
                 learning_rate=training.REFERENCE_LEARNING_RATE, seed=0, dropout_rate=None):
    """The settings that determine an HRS run's weights (checked), as stored in its ``run.json``."""
    channels = list(hrs.parse_channels(channels))
    epochs = parse_epochs(epochs, len(channels))
    training.check_training_settings(min(epochs), batch_size, learning_rate)
    architecture = models.architecture_for(dataset, arch)
    rate = architecture.dropout_rate if dropout_rate is None else float(dropout_rate)
    return {"kind": "hrs_run", "dataset": dataset.name, "train_fingerprint": data_fingerprint(dataset.x_train, dataset.y_train),
            "architecture": architecture.name, "dropout_rate": rate, "channels": channels, "epochs": epochs,
            "batch_size": int(batch_size), "learning_rate": float(learning_rate), "seed": int(seed),
            "epoch_order": EPOCH_ORDER}


def check_reusable(source_dir, dataset, channels, epochs, **settings):
    """ConfigError unless the block-0 channels of the run in ``source_dir`` may be reused by a run of these settings."""
    _reusable_block0(source_dir, run_settings(dataset, channels, epochs, **settings))


def train_hrs(dataset, output_dir, channels, epochs, arch=None, batch_size=training.REFERENCE_BATCH_SIZE,
              learning_rate=training.REFERENCE_LEARNING_RATE, seed=0, dropout_rate=None, granularity="batch",
              eval_repeats=5, verbose=2, log=print, reuse_block0_from=None):
    """Trains (or resumes) an HRS model bottom-up in ``output_dir``; returns the summary dict.

    ``reuse_block0_from``: a finished or partial run folder whose block-0 channels are copied instead of
    retrained (see :func:`reuse_block0_channels`).

    ``granularity`` is that of the saved model; clean accuracy is always measured in ``sample``
    granularity (each test image its own random path) over ``eval_repeats`` evaluations.
    """
    checks.choice(granularity, "granularity", ("batch", "sample"))
    run = run_settings(dataset, channels, epochs, arch, batch_size, learning_rate, seed, dropout_rate)
    channels, epochs, rate = run["channels"], run["epochs"], run["dropout_rate"]
    architecture = models.get_architecture(run["architecture"])
    if reuse_block0_from:
        _reusable_block0(reuse_block0_from, run)  # refuse before anything is written
    os.makedirs(os.path.join(output_dir, CHANNEL_DIR), exist_ok=True)
    resumed = _check_resume(output_dir, run)
    progress_path = os.path.join(output_dir, PROGRESS_FILE)
    progress = fileio.read_json(progress_path) if os.path.exists(progress_path) else {"channels": {}}
    if reuse_block0_from:
        reuse_block0_channels(output_dir, reuse_block0_from, run, progress, log)
    total = sum(channels)
    done = 0
    for b, count in enumerate(channels):
        for c in range(count):
            done += 1
            key = f"{b}_{c}"
            tag = f"[block {b + 1}/{len(channels)}, channel {c + 1}/{count}, {done}/{total}]"
            if key in progress["channels"] and os.path.exists(channel_path(output_dir, b, c)):
                log(f"{tag} already trained (test accuracy {progress['channels'][key]['test_accuracy']:.4f}), skipped")
                continue
            log(f"{tag} training {epochs[b]} epochs")
            record = _train_channel(dataset, architecture, run, output_dir, b, c, verbose, log)
            progress["channels"][key] = record
            fileio.write_json(progress_path, progress)
            os.remove(fine_tuning.checkpoint_path(channel_path(output_dir, b, c)))
            log(f"{tag} done in {record['seconds']:.0f}s, test accuracy {record['test_accuracy']:.4f}")

    model = assemble_hrs_model(output_dir, architecture, channels, rate, granularity)
    serialization.save_model(model, os.path.join(output_dir, MODEL_FILE))
    log(f"evaluating: {eval_repeats} passes over {len(dataset.x_test)} test images, each image its own random path")
    summary = dict(run)
    summary.update({
        "kind": "hrs_summary",
        "data_source": dataset.source,
        "granularity": granularity,
        "resumed": resumed,
        "channel_records": [progress["channels"][f"{b}_{c}"] for b, n in enumerate(channels) for c in range(n)],
        "test_accuracy": metrics.clean_accuracy(model, dataset.x_test, dataset.y_test, eval_repeats),
        "path_test_accuracy": path_accuracies(model, dataset.x_test, dataset.y_test),
        "train_seconds": round(sum(r["seconds"] for r in progress["channels"].values()), 1),
        "model_file": MODEL_FILE,
        "versions": training.versions(),
    })
    fileio.write_json(os.path.join(output_dir, SUMMARY_FILE), summary)
    acc = summary["test_accuracy"]
    log(f"HRS {'x'.join(map(str, channels))} test accuracy {acc['mean']:.4f} +- {acc['std']:.4f} "
        f"(sample mode, {eval_repeats} passes); wrote {os.path.join(output_dir, MODEL_FILE)}")
    return summary
