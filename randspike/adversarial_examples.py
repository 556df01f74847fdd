"""The adversarial examples of the Random Spiking paper's adversarial training (sections 5.1.1, 5.1.2, Table 3;
appendix A.1, Dropout-Adv and RS-1-Adv), generated resumably.

Recipe (the paper's): random training images, each with a random target class other than its label; the targeted
C&W-L2 attack (:func:`hrs_tf.attacks.cw_l2.cw_l2`) on the target model (the trained Dropout model for Dropout-Adv,
RS-1 for RS-1-Adv) at each working confidence K of Table 3, ``n`` images per K; failures and examples above the L2
cut-off are discarded; the rest are sorted by L2 ascending and the smallest ``keep`` are added to the training set
**with their true labels** ("12,000 generated, the first 10,000 added": :data:`PAPER_GENERATED`, :data:`PAPER_KEPT`).

Choices made here (the paper does not say):

- *success* is exactly the criterion of ``cw_l2``: it returns the original image where no iterate reached the target
  with a logit margin >= K, so an example succeeded iff the returned image differs from the original in a pixel.
  For a stochastic target (dropout / random spiking on at test time) the margin is that of the EOT mean of
  ``eot_samples`` passes' logits (pass ``eot_samples`` in the C&W settings);
- the images are kept as the float32 images the attack returns (not rounded to 8 bits): they are training inputs,
  not a submission to a defense, and the L2 compared to the cut-off is the L2 of the image actually added;
- every K gets its own training images: ``len(confidences) * n`` distinct indices drawn without replacement.

Resumable: the work is cut into chunks of ``batch_size`` images per K, each written atomically to
``<work_dir>/chunks/`` the moment it is done; a rerun with the same settings, model and data (all recorded in
``<work_dir>/plan.json``, a change refused) redoes only the missing chunks. The result is ``examples.npz`` and
``summary.json`` (counts per K generated / succeeded / under the cut-off / kept, mean L2).
"""

import os
import time

import numpy as np

from hrs_tf import checks, fileio
from hrs_tf.attacks import common
from hrs_tf.attacks.cw_l2 import cw_l2
from hrs_tf.errors import ConfigError
from hrs_tf.experiments.cells import check_settings
from hrs_tf.layers import stochastic
from hrs_tf.training.checkpoint import data_fingerprint, weights_fingerprint

# Table 3: dataset -> (L2 cut-off, working confidence values K, examples generated for each K).
TABLE3 = {"mnist": (3.0, (0, 5, 10, 15), 3000), "fashion_mnist": (1.0, (0, 20, 40, 60), 3000),
          "cifar10": (1.0, (0, 20, 40, 60, 80, 100), 2000)}
PAPER_GENERATED, PAPER_KEPT = 12_000, 10_000  # appendix A.1: generated per model, smallest-L2 added
BATCH_SIZE = 250  # images per C&W call = per chunk file
EXAMPLES_FILE, SUMMARY_FILE, CHUNK_DIR = "examples.npz", "summary.json", "chunks"
CONTENT_KEYS = ("confidences", "per_confidence", "l2_cutoff", "keep", "seed", "batch_size", "cw_settings", "model",
                "data")


def paper_settings(dataset, scale=1.0):
    """Table 3's settings for ``dataset`` with ``n`` per K (and ``keep``) scaled by ``scale``: a dict of
    ``confidences``, ``per_confidence``, ``l2_cutoff``, ``keep`` (``keep`` = 10,000 / 12,000 of those generated)."""
    dataset = checks.choice(dataset, "dataset", tuple(TABLE3))
    scale = checks.positive(scale, "scale")
    cutoff, confidences, per_confidence = TABLE3[dataset]
    per_confidence = max(1, int(round(per_confidence * scale)))
    keep = max(1, int(round(len(confidences) * per_confidence * PAPER_KEPT / PAPER_GENERATED)))
    return {"confidences": confidences, "per_confidence": per_confidence, "l2_cutoff": cutoff, "keep": keep}


def check_confidences(confidences):
    """Non-empty, distinct, non-negative confidence values K, as a tuple of floats."""
    if isinstance(confidences, (str, bytes)) or not hasattr(confidences, "__len__") or len(confidences) == 0:
        raise ConfigError(f"confidences={confidences!r} must be a non-empty list of C&W confidences K >= 0")
    values = tuple(checks.nonnegative(k, "confidence") for k in confidences)
    if len(set(values)) != len(values):
        raise ConfigError(f"confidences={list(confidences)!r} repeats a value")
    return values


def draw_plan(y_train, confidences, per_confidence, num_classes, seed):
    """The seeded choice of the work: per K, ``per_confidence`` training indices (distinct over all K) and targets
    drawn uniformly among the classes other than the label. Returns (indices, targets), each (len(K), n)."""
    rng = np.random.default_rng([int(seed), 0x5AD])
    total = len(confidences) * per_confidence
    indices = rng.choice(len(y_train), size=total, replace=False).reshape(len(confidences), per_confidence)
    shifts = rng.integers(1, num_classes, size=indices.shape)
    targets = (np.asarray(y_train)[indices] + shifts) % num_classes
    return indices.astype(np.int64), targets.astype(np.int64)


def _fingerprint(model):
    return [weights_fingerprint(m) for m in common.models_of(model)]


def _chunk_path(work_dir, k_index, kappa, chunk):
    return os.path.join(work_dir, CHUNK_DIR, f"k{k_index}_K={kappa:g}_c{chunk:04d}.npz")


def _save_npz(path, **arrays):
    with fileio.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def _load_npz(path):
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def generate(model, x_train, y_train, work_dir, confidences, per_confidence, l2_cutoff, keep, seed=0,
             batch_size=BATCH_SIZE, log=print, **cw_settings):
    """Generates the adversarial-training examples of Table 3 into ``work_dir`` (resumable) and returns them.

    ``model``: the target Keras model with logits output (or a list of models, attacked together); ``confidences``:
    the K values; ``per_confidence``: images attacked per K; ``l2_cutoff``: the largest L2 kept; ``keep``: how many of
    the smallest-L2 valid examples are kept; ``cw_settings``: passed to ``cw_l2`` (``max_iterations``,
    ``binary_search_steps``, ``learning_rate``, ``initial_const``, ``eot_samples`` for a stochastic target, ...).

    Returns a dict: ``x_adv`` (kept images, float32), ``y`` (their TRUE labels), ``targets``, ``l2``, ``confidence``,
    ``index`` (training-set indices), all sorted by L2 ascending, and ``summary`` (the JSON of ``summary.json``).
    """
    confidences = check_confidences(confidences)
    per_confidence = checks.count(per_confidence, "per_confidence", minimum=1)
    l2_cutoff = checks.positive(l2_cutoff, "l2_cutoff")
    keep = checks.count(keep, "keep", minimum=1)
    seed = checks.count(seed, "seed")
    batch_size = checks.count(batch_size, "batch_size", minimum=1)
    x_train = np.asarray(x_train, np.float32)
    y_train = np.asarray(y_train).astype(np.int64).reshape(-1)
    if len(x_train) != len(y_train):
        raise ConfigError(f"x_train has {len(x_train)} images but y_train {len(y_train)} labels")
    total = len(confidences) * per_confidence
    if total > len(x_train):
        raise ConfigError(f"{len(confidences)} confidences x {per_confidence} images = {total} exceeds the "
                          f"{len(x_train)} training images")
    if keep > total:
        raise ConfigError(f"keep={keep} exceeds the {total} examples generated ({len(confidences)} confidences x "
                          f"{per_confidence})")
    num_classes = int(common.models_of(model)[0].output_shape[-1])
    settings = {"confidences": list(confidences), "per_confidence": per_confidence, "l2_cutoff": l2_cutoff,
                "keep": keep, "seed": seed, "batch_size": batch_size, "cw_settings": dict(sorted(cw_settings.items())),
                "model": _fingerprint(model), "data": data_fingerprint(x_train, y_train)}
    check_settings(work_dir, settings, CONTENT_KEYS, "adversarial-training examples",
                   hint="use another work_dir or the original settings, model and data")
    indices, targets = draw_plan(y_train, confidences, per_confidence, num_classes, seed)

    chunks = [(ki, c) for ki in range(len(confidences)) for c in range(0, per_confidence, batch_size)]
    parts, started = [], time.time()
    for done, (ki, start) in enumerate(chunks, 1):
        kappa, chunk = confidences[ki], start // batch_size
        path = _chunk_path(work_dir, ki, kappa, chunk)
        if not os.path.exists(path):
            idx, tgt = indices[ki, start:start + batch_size], targets[ki, start:start + batch_size]
            tick = time.time()
            stochastic_models = [m for m in common.models_of(model) if stochastic.is_stochastic(m)]
            for m in stochastic_models:  # the same draws whether or not the run was resumed
                stochastic.reseed(m, seed * 1_000_003 + ki * 10_007 + chunk)
            x = x_train[idx]
            adv = np.asarray(cw_l2(model, x, tgt, targeted=True, confidence=kappa, **cw_settings), np.float32)
            succeeded = np.any((adv != x).reshape(len(x), -1), axis=1)
            l2 = np.sqrt(np.sum(np.square(adv.astype(np.float64) - x).reshape(len(x), -1), axis=1))
            _save_npz(path, x_adv=adv, index=idx, target=tgt, l2=l2, succeeded=succeeded,
                      confidence=np.full(len(idx), kappa))
            log(f"chunk {done}/{len(chunks)} (K={kappa:g}, images {start}..{start + len(idx) - 1}): "
                f"{int(succeeded.sum())}/{len(idx)} succeeded, {int(np.sum(succeeded & (l2 <= l2_cutoff)))} under "
                f"L2 {l2_cutoff:g}, {time.time() - tick:.1f} s (total {time.time() - started:.0f} s)")
        parts.append(_load_npz(path))
    return _assemble(work_dir, parts, confidences, y_train, l2_cutoff, keep, settings, log)


def _assemble(work_dir, parts, confidences, y_train, l2_cutoff, keep, settings, log):
    """Filters (success, L2 <= cut-off), sorts by L2 (stable), keeps the smallest ``keep``; writes the result."""
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    valid = merged["succeeded"] & (merged["l2"] <= l2_cutoff)
    order = np.flatnonzero(valid)[np.argsort(merged["l2"][valid], kind="stable")][:keep]
    kept = {"x_adv": merged["x_adv"][order].astype(np.float32), "y": y_train[merged["index"][order]],
            "targets": merged["target"][order], "l2": merged["l2"][order], "confidence": merged["confidence"][order],
            "index": merged["index"][order]}
    per_k = {}
    for kappa in confidences:
        of_k = merged["confidence"] == kappa
        ok = of_k & merged["succeeded"]
        per_k[f"{kappa:g}"] = {"generated": int(of_k.sum()), "succeeded": int(ok.sum()),
                               "under_cutoff": int((ok & valid).sum()), "kept": int(np.sum(kept["confidence"] == kappa)),
                               "l2_mean_succeeded": float(merged["l2"][ok].mean()) if ok.any() else None}
    summary = {"generated": int(len(valid)), "succeeded": int(merged["succeeded"].sum()),
               "under_cutoff": int(valid.sum()), "kept": int(len(order)), "keep_requested": keep,
               "l2_cutoff": l2_cutoff, "l2_mean_kept": float(kept["l2"].mean()) if len(order) else None,
               "l2_max_kept": float(kept["l2"].max()) if len(order) else None, "per_confidence": per_k,
               "settings": {k: v for k, v in settings.items() if k not in ("model", "data")}}
    if len(order) < keep:
        log(f"only {len(order)} of the {keep} examples asked for succeeded under L2 {l2_cutoff:g}: all are kept")
    _save_npz(os.path.join(work_dir, EXAMPLES_FILE), **kept)
    fileio.write_json(os.path.join(work_dir, SUMMARY_FILE), summary)
    log(f"adversarial examples: {summary['succeeded']}/{summary['generated']} succeeded, {summary['under_cutoff']} "
        f"under L2 {l2_cutoff:g}, {summary['kept']} kept (mean L2 {summary['l2_mean_kept'] or 0:.3f})")
    return dict(kept, summary=summary)


def load(work_dir):
    """The kept examples written by :func:`generate` (dict of arrays, plus ``summary``)."""
    path = os.path.join(work_dir, EXAMPLES_FILE)
    if not os.path.isfile(path):
        raise ConfigError(f"{work_dir!r} holds no {EXAMPLES_FILE} (run generate first)")
    return dict(_load_npz(path), summary=fileio.read_result(os.path.join(work_dir, SUMMARY_FILE)))


def augmented_training_set(x_train, y_train, examples):
    """``(x, y)``: the training set with the kept adversarial examples appended under their TRUE labels
    (appendix A.1: "add ... into the training dataset"). ``examples``: the result of :func:`generate` / :func:`load`."""
    x_train, y_train = np.asarray(x_train), np.asarray(y_train)
    x_adv, y_adv = np.asarray(examples["x_adv"]), np.asarray(examples["y"])
    if x_adv.shape[1:] != x_train.shape[1:] or len(x_adv) != len(y_adv):
        raise ConfigError(f"adversarial examples of shape {x_adv.shape} with {len(y_adv)} labels do not fit training "
                          f"images of shape {x_train.shape[1:]}")
    return (np.concatenate([x_train, x_adv.astype(x_train.dtype)]),
            np.concatenate([y_train, y_adv.astype(y_train.dtype)]))
