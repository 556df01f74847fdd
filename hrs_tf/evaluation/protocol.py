"""Evaluation harness: run an attack in batches under a setting and score it on the stochastic model.

Scores (:mod:`.scoring`, all JSON-ready):

- **ASR**: targeted, success = prediction == target; untargeted, prediction != label. A stochastic model
  is judged by fresh passes of the adversarial images on the model in ``random`` mode (whatever realisation
  the attack was crafted on), under the papers' decision rules: ``asr`` is the single-pass ASR of the HRS
  paper (the mean over ``passes`` independent passes, i.e. the expected single-pass ASR, with
  ``asr_first_pass`` the plain one-pass value), ``asr_majority`` the ASR of the majority vote of the
  ``passes`` predictions (ties to the smaller label) and ``asr_mc_average`` that of their mean softmax (the
  Random Spiking paper's voting and MC average); ``defense_rate = 1 - asr``. With ``round_8bit`` the
  adversarial images are rounded to 8-bit pixels before they are judged.
- **clean accuracy** of the attacked images (single pass and majority), and which images were correct.
- **distortion** of the successful examples (majority success): mean and median L0 (changed components,
  ``|delta| > l0_tolerance``, also as a fraction of the input size), L2 and L-inf, in [0, 1] pixel units.

Batches of a forward pass share one HRS path when the switch draws per batch; the expected single-pass ASR
is the same either way (only its variance differs). ``eval_batch_size=1`` is the reference's
one-image-at-a-time protocol.

:func:`first_n_all_targets` is the papers' protocol (the first N test images x all 9 wrong targets, or one
random target, or untargeted) as one call.
"""

import inspect
import sys
import time

import numpy as np

from hrs_tf import checks
from hrs_tf import data as data_module
from hrs_tf.attacks import common, registry, settings
from hrs_tf.errors import ConfigError, ModelError
from hrs_tf.evaluation import scoring
from hrs_tf.layers import stochastic

TARGET_MODES = ("all", "random", "none")
# The attack settings (crafting, hrs_tf.attacks.settings) plus "derandomized" (not in the papers): crafted like
# fixed="off" and also judged with randomness off -- the trained weights alone, which separates the robustness
# of the weights (e.g. noise-trained) from that of the test-time randomness.
PROTOCOL_SETTINGS = settings.SETTINGS + ("derandomized",)
# -- running an attack ---------------------------------------------------------------------------------
def attack_function(attack):
    """``(name, function)`` of an attack given by registry name or as a function."""
    if callable(attack):
        return getattr(attack, "__name__", "attack"), attack
    return attack, registry.get(attack).call


def check_attack_kwargs(name, fn, kwargs):
    """ConfigError naming the first keyword ``fn`` does not take."""
    params = inspect.signature(getattr(fn, "__wrapped__", fn)).parameters
    reserved = {"model", "x", "y", "targeted", "eot_samples"}
    for key in kwargs:
        if key in reserved or key not in params:
            raise ConfigError(f"attack {name!r} does not take the setting {key!r}; it takes "
                              f"{', '.join(p for p in params if p not in reserved) or 'no settings'}")


def run_attack(model, attack, x, y, targeted, setting="whitebox", eot_samples=10, fixed="off", batch_size=100,
               seed=0, progress=True, stats=None, seed_images=None, **attack_kwargs):
    """Runs ``attack`` (a registry name or function) on ``(x, y)`` in batches under ``setting``; numpy x_adv.

    Crafting under ``whitebox`` / ``eot`` uses the model in ``random`` mode; ``fixed`` crafts on the fixed
    realisation ``fixed`` (see :mod:`hrs_tf.attacks.settings`). Attacks with a ``seed`` get ``seed + batch
    index``; attacks that take ``seed_images`` (attacker-side data, e.g. a substitute's seed set) get
    ``seed_images``; attacks that count queries fill ``stats`` (a dict, when given) with per-example arrays
    (``queries``: images sent through the model) over all batches. ``progress`` prints one line per batch and
    one per inner step of attacks that report them (:func:`hrs_tf.attacks.common.step_progress`; ``True``: to
    stdout; or a callable taking the line).
    """
    name, fn = attack_function(attack)
    check_attack_kwargs(name, fn, attack_kwargs)
    checks.choice(setting, "attack setting", settings.SETTINGS)
    batch_size = checks.count(batch_size, "batch_size", minimum=1)
    wrapped = settings.apply(fn, setting, eot_samples, fixed)
    takes_seed = settings.accepts(fn, "seed")
    takes_stats = settings.accepts(fn, "stats")
    if seed_images is not None and settings.accepts(fn, "seed_images"):
        attack_kwargs["seed_images"] = seed_images
    counted = []
    x = common.check_images(model, x)
    y = np.asarray(y)
    report = _progress(progress)
    out = np.empty_like(x)
    start = time.time()
    num_batches = -(-len(x) // batch_size)
    mode = stochastic.RANDOM
    for b, i in enumerate(range(0, len(x), batch_size)):
        kwargs = dict(attack_kwargs)
        if takes_seed:
            kwargs["seed"] = int(seed) + b
        if takes_stats:
            kwargs["stats"] = {}
            counted.append(kwargs["stats"])
        where = f"[{name} {setting}] batch {b + 1}/{num_batches}"
        with stochastic.randomness(model, mode), common.step_progress(lambda line: report(f"{where} {line}")):
            out[i:i + batch_size] = wrapped(model, x[i:i + batch_size], y[i:i + batch_size], targeted=targeted, **kwargs)
        report(f"[{name} {setting}] batch {b + 1}/{num_batches}: {min(i + batch_size, len(x))}/{len(x)} examples, "
               f"{time.time() - start:.1f} s")
    if stats is not None and counted:
        for key in sorted(set().union(*counted)):
            stats[key] = np.concatenate([np.asarray(c[key]).reshape(-1) for c in counted if key in c])
    return out


def _progress(progress):
    if callable(progress):
        return progress
    if progress:
        return lambda line: print(line, file=sys.stdout, flush=True)
    return lambda line: None


# -- the papers' protocol -----------------------------------------------------------------------------
def make_pairs(labels, targets="all", seed=0, num_classes=10):
    """(image index, target) pairs: ``all`` 9 wrong targets per image, ``random`` one, ``none`` the label."""
    labels = np.asarray(labels)
    if targets == "all":
        idx = np.repeat(np.arange(len(labels)), num_classes - 1)
        tgt = np.array([t for label in labels for t in range(num_classes) if t != label], np.int64)
        return idx, tgt
    if targets == "random":
        rng = np.random.default_rng(seed)
        offsets = rng.integers(1, num_classes, size=len(labels))
        return np.arange(len(labels)), (labels + offsets) % num_classes
    if targets == "none":
        return np.arange(len(labels)), labels.astype(np.int64)
    raise ConfigError(f"targets={targets!r} is not one of {', '.join(TARGET_MODES)}")


def check_model_fits(model, dataset):
    """ModelError unless the model takes the data set's images and outputs one score per class of it (the one
    check of a loaded model against a data set, run by every tool that evaluates a model on one)."""
    name = getattr(model, "name", "?")
    shape = common.model_input_shape(model)
    if shape is not None and (len(shape) != len(dataset.input_shape) or
                              any(s is not None and s != d for s, d in zip(shape, dataset.input_shape))):
        raise ModelError(f"model {name!r} takes inputs of shape {tuple(shape)}, "
                         f"but {dataset.name} images have shape {dataset.input_shape}")
    output = getattr(model, "output_shape", None)
    if isinstance(output, tuple) and len(output) == 2 and output[-1] is not None and output[-1] != dataset.num_classes:
        raise ModelError(f"model {name!r} outputs {output[-1]} classes, but {dataset.name} has {dataset.num_classes}")
    if isinstance(output, tuple) and len(output) != 2:
        raise ModelError(f"model {name!r} outputs shape {output}; expected (batch, {dataset.num_classes}) class scores")


def evaluate_protocol(model, dataset, attack, num_images=100, targets="all", setting="whitebox", eot_samples=10,
                      fixed="off", passes=10, only_correct=False, batch_size=100, eval_batch_size=100, seed=0,
                      progress=True, round_8bit=False, **attack_kwargs):
    """The first ``num_images`` test images of ``dataset`` attacked toward ``targets`` and scored.

    ``targets``: ``all`` (the 9 wrong classes of each image, targeted), ``random`` (one wrong class drawn
    with ``seed``, targeted) or ``none`` (untargeted). ``only_correct`` drops images whose clean majority
    prediction is wrong before attacking. ``setting``: one of :data:`PROTOCOL_SETTINGS`; clean and adversarial
    predictions are made on the deployed (``random``) model, except under ``derandomized`` (randomness off).
    ``round_8bit`` rounds the adversarial images to 8-bit pixels before they are judged.
    Returns a JSON-ready dict of settings and scores.
    """
    checks.choice(setting, "attack setting", PROTOCOL_SETTINGS)
    judged_in = stochastic.OFF if setting == "derandomized" else stochastic.RANDOM
    # derandomized: crafted on the model with randomness off, exactly as fixed="off"
    craft_setting, craft_fixed = ("fixed", stochastic.OFF) if setting == "derandomized" else (setting, fixed)
    name, fn = attack_function(attack)
    check_attack_kwargs(name, fn, attack_kwargs)
    checks.choice(targets, "targets", TARGET_MODES)
    check_model_fits(model, dataset)
    passes = checks.count(passes, "passes", minimum=1)
    x, y = data_module.first_test_images(dataset, num_images)
    report = _progress(progress)
    note = None
    if setting != "whitebox" and not stochastic.is_stochastic(model):
        note = (f"model {getattr(model, 'name', '?')!r} has no stochastic layer: setting {setting!r} changes nothing "
                "(every pass is the same); the result equals whitebox")
        report(f"note: {note}")
    started = time.time()
    with stochastic.randomness(model, judged_in):
        clean_probabilities = scoring.predict_probabilities(model, x, passes, eval_batch_size)
    num_classes = clean_probabilities.shape[-1]
    clean_preds = scoring.decide(clean_probabilities, "single")
    clean_correct = scoring.success(scoring.decide(clean_probabilities, "vote"), y, targeted=True)
    clean = {"num_images": int(len(y)), "accuracy": float((clean_preds == y).mean()),
             "accuracy_majority": float(clean_correct.mean()), "num_correct_majority": int(clean_correct.sum())}
    keep = np.flatnonzero(clean_correct) if only_correct else np.arange(len(y))
    idx, tgt = make_pairs(y[keep], targets, seed, num_classes)
    idx = keep[idx]
    targeted = targets != "none"
    report(f"{name}: {len(idx)} {'(image, target) pairs' if targeted else 'images'} from {len(keep)} images, "
           f"setting {setting}")
    crafted = time.time()
    counts = {}
    # attacker-side data for attacks that take it: the test images after the attacked ones
    x_adv = run_attack(model, fn, x[idx], tgt, targeted, craft_setting, eot_samples, craft_fixed, batch_size, seed,
                       report, stats=counts, seed_images=dataset.x_test[len(x):], **attack_kwargs) if len(idx) else x[idx]
    craft_seconds = time.time() - crafted
    scores, judged = (scoring.score(model, x[idx], x_adv, tgt, targeted, passes, eval_batch_size, judged_in=judged_in,
                                    round_8bit=round_8bit)
                      if len(idx) else ({"num_examples": 0}, {"vote": np.zeros(0, bool)}))
    majority = judged["vote"]
    for key, values in counts.items():  # e.g. queries of a black-box attack, per example
        scores[key] = {"mean": float(np.mean(values)), "median": float(np.median(values)),
                       "max": int(np.max(values)), "total": int(np.sum(values))}
    if targeted and len(idx):
        scores["asr_majority_by_target"] = {int(t): float(majority[tgt == t].mean()) for t in np.unique(tgt)}
        per_image = np.bincount(np.searchsorted(keep, idx), weights=majority, minlength=len(keep))
        scores["images_fooled_toward_every_target"] = int((per_image == num_classes - 1).sum()) if targets == "all" else None
    return {
        "attack": name,
        "attack_settings": {k: _jsonable(v) for k, v in attack_kwargs.items()},
        "targets": targets,
        "targeted": targeted,
        "setting": setting,
        "setting_note": note,
        "eot_samples": int(eot_samples) if setting == "eot" else None,
        "fixed": _jsonable(fixed) if setting == "fixed" else None,
        "judged_in": judged_in,
        "passes": passes,
        "only_correct": bool(only_correct),
        "num_images": int(num_images),
        "batch_size": int(batch_size),
        "eval_batch_size": int(eval_batch_size),
        "seed": int(seed),
        "round_8bit": bool(round_8bit),
        "stochastic_layers": [layer.name for layer in stochastic.stochastic_layers(model)],
        "attacker_data": (f"test images {len(x)}..{len(dataset.x_test) - 1}" if settings.accepts(fn, "seed_images")
                          else None),
        "clean": clean,
        "results": scores,
        "craft_seconds": round(craft_seconds, 2),
        "seconds": round(time.time() - started, 2),
    }


def first_n_all_targets(model, dataset, attack, num_images=100, **kwargs):
    """The papers' protocol: the first ``num_images`` test images x all 9 wrong targets (see
    :func:`evaluate_protocol` for the other settings)."""
    return evaluate_protocol(model, dataset, attack, num_images, targets="all", **kwargs)


def _jsonable(value):
    if isinstance(value, (np.floating, float)):
        return float(value)
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if callable(value):  # e.g. a loss_fn: recorded by name
        return getattr(value, "__name__", repr(value))
    return value


def cleverhans_version():
    try:
        import cleverhans

        return cleverhans.__version__
    except Exception:  # noqa: BLE001 -- optional; only recorded
        return None
