"""Defensive dropout (Wang et al., ICCAD 2018): Algorithm 1 (section 3.4) and the (train rate x test rate)
grid of Figure 3 / Tables 3-6, resumable.

A model trained with dropout rate r after FC1 is wrapped once with
:func:`hrs_tf.baselines.with_defensive_dropout`; the test rate r' is then changed in place
(``DefensiveDropout.set_test_rate``, no rebuilt or retraced model). At each r' one *row* is measured:

- **test accuracy**: ``repeats`` passes over the first ``accuracy_images`` test images, every image with
  its own dropout mask (the reference's one-image-at-a-time evaluation);
- **attack**: the first ``num_images`` test images x their 9 wrong targets (targeted), crafted white-box on
  the stochastic model (random mode: every forward pass of the attack draws fresh masks, gradients
  included) as in the paper, or under ``eot`` (every gradient averaged over ``eot_samples`` passes) or
  ``fixed`` (crafted with dropout off) to test the defense against an adaptive attacker; **ASR** = success of single fresh passes (the mean over ``passes`` passes, i.e. the expected
  single-pass ASR, plus the first pass alone and the majority of the passes); **mean L2** of the
  successful examples, each (example, pass) success weighted once.

Algorithm 1: a_max = the test accuracy at r' = 0 (the trained model with test dropout off); r' goes 0,
step, 2 step, ... and the search stops at the first r' whose accuracy is below a_max - epsilon (that row is
measured and kept, marked as failing). The chosen r' is the largest r' whose accuracy is at least
a_max - epsilon (0: no test-time dropout meets the requirement).

Attacks (the paper's settings, section 4.1; all targeted): ``fgsm`` eps 0.25; ``jsma_f`` / ``jsma_z``
CleverHans defaults (theta 1, gamma 1); ``cw_l2`` 10 binary-search steps x 100 Adam iterations (learning
rate 0.1 as the HRS paper's appendix C.1 by the same authors, initial c 1e-3, abort early).

Each finished row (or grid cell) is saved at once (atomic JSON); a rerun with the same settings skips
finished rows, a rerun with other settings is refused. Every row is drawn from its own seed (a function of
the run seed and the rates), so a resumed run measures what an uninterrupted one would.
"""

import hashlib
import os
import time

import keras
import numpy as np

from hrs_tf import baselines, des, evaluation, fileio, metrics, reporting, stochastic
from hrs_tf import data as data_module
from hrs_tf.baseline_layers import check_rate
from hrs_tf.errors import ConfigError, ModelError

# The paper's attack settings (section 4.1); overridable per run.
PAPER_ATTACKS = {
    "fgsm": {"eps": 0.25},
    "jsma_f": {"theta": 1.0, "gamma": 1.0},
    "jsma_z": {"theta": 1.0, "gamma": 1.0},
    "cw_l2": {"binary_search_steps": 10, "max_iterations": 100, "learning_rate": 0.1, "initial_const": 1e-3,
              "confidence": 0.0, "abort_early": True},
}
PAPER_TEST_RATES = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9)  # the columns of Tables 3-6
RATE_DIGITS = 6


def attack_settings(attack, overrides=None):
    """The paper's settings of ``attack`` updated with ``overrides`` (checked against the attack)."""
    if attack not in PAPER_ATTACKS:
        raise ConfigError(f"attack {attack!r} is not one of the paper's attacks {', '.join(PAPER_ATTACKS)}")
    settings = dict(PAPER_ATTACKS[attack])
    settings.update(overrides or {})
    evaluation.check_attack_kwargs(attack, evaluation.attack_function(attack)[1], settings)
    return settings


def check_search(epsilon, step):
    try:
        epsilon, step = float(epsilon), float(step)
    except (TypeError, ValueError):
        raise ConfigError(f"epsilon={epsilon!r} and step={step!r} must be numbers") from None
    if not 0 <= epsilon < 1:
        raise ConfigError(f"epsilon={epsilon} (the largest accuracy drop allowed) must be in [0, 1)")
    if not 0 < step < 1:
        raise ConfigError(f"step={step} (the test-rate increment) must be in (0, 1)")
    return epsilon, step


def search_rates(step):
    """0, step, 2 step, ... below 1."""
    rates, k = [], 0
    while round(k * step, RATE_DIGITS) < 1:
        rates.append(round(k * step, RATE_DIGITS))
        k += 1
    return rates


def rate_key(test_rate, train_rate=None):
    r = f"{round(float(test_rate), RATE_DIGITS):g}"
    return r if train_rate is None else f"{round(float(train_rate), RATE_DIGITS):g}/{r}"


def row_seed(seed, train_rate, test_rate):
    """The seed of one measurement: a fixed function of the run seed and the two rates."""
    words = [int(seed), int(round(train_rate * 10**RATE_DIGITS)), int(round(test_rate * 10**RATE_DIGITS))]
    return int(np.random.SeedSequence(words).generate_state(1)[0] % (2**31 - 1))


def file_digest(path):
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# -- one measurement ----------------------------------------------------------------------------------
class Evaluator:
    """Measures rows (test accuracy, ASR, L2) of one trained model at any test rate."""

    def __init__(self, model, dataset, attack, attack_kwargs, num_images, accuracy_images=None, repeats=5, passes=10,
                 batch_size=100, seed=0, train_rate=None, progress=print, setting="whitebox", eot_samples=10):
        existing = baselines.dropout_after_fc1(model)
        if existing is None and train_rate is None:
            raise ModelError(f"model {model.name!r} has no Dropout layer after 'fc1'; defensive dropout needs a model "
                             "trained with dropout (or give its train rate 0 explicitly)")
        if existing is not None and train_rate is not None and abs(existing.rate - train_rate) > 1e-6:
            raise ConfigError(f"model {model.name!r} was trained with dropout {existing.rate:g}, not {train_rate:g}")
        self.model = baselines.with_defensive_dropout(model, 0.0, train_rate=None if existing is not None else train_rate)
        self.layer = self.model.get_layer("dropout")
        self.train_rate = self.layer.rate
        evaluation.check_model_fits(self.model, dataset)
        self.dataset = dataset
        self.attack = attack
        self.attack_kwargs = attack_kwargs
        self.x, self.y = data_module.first_test_images(dataset, num_images)
        n = len(dataset.x_test) if accuracy_images is None else accuracy_images
        self.accuracy_x, self.accuracy_y = data_module.first_test_images(dataset, n)
        self.repeats, self.passes, self.batch_size, self.seed = int(repeats), int(passes), int(batch_size), int(seed)
        self.progress = progress or (lambda line: None)
        self.setting, self.eot_samples = setting, int(eot_samples)

    def __call__(self, test_rate):
        """One row at test rate ``test_rate``."""
        started = time.time()
        self.layer.set_test_rate(test_rate)
        seed = row_seed(self.seed, self.train_rate, test_rate)
        keras.utils.set_random_seed(seed)
        baselines.reseed_layers(self.model, seed)
        with stochastic.randomness(self.model, stochastic.RANDOM):
            accuracy = metrics.repeated_accuracy(self.model, self.accuracy_x, self.accuracy_y, self.repeats)
            idx, targets = evaluation.make_pairs(self.y, "all", num_classes=int(self.model.output_shape[-1]))
            crafted = time.time()
            x = self.x[idx]
            x_adv = evaluation.run_attack(self.model, self.attack, x, targets, True, setting=self.setting,
                                          eot_samples=self.eot_samples, batch_size=self.batch_size, seed=seed,
                                          progress=self.progress, **self.attack_kwargs)
            attack_seconds = time.time() - crafted
            predictions = evaluation.predict(self.model, x_adv, self.passes)
        hits = evaluation.success(predictions, targets, targeted=True)  # (passes, pairs)
        num_classes = int(self.model.output_shape[-1])
        majority = evaluation.success(evaluation.vote(predictions, num_classes), targets, targeted=True)
        l2 = evaluation.distortions(x, x_adv)["l2"]
        weights = hits.sum(axis=0)
        return {
            "train_rate": self.train_rate,
            "test_rate": float(test_rate),
            "accuracy": accuracy["mean"],
            "accuracy_std": accuracy["std"],
            "accuracy_runs": accuracy["runs"],
            "asr": float(hits.mean()),
            "asr_first_pass": float(hits[0].mean()),
            "asr_majority": float(majority.mean()),
            "mean_l2": float(np.average(l2, weights=weights)) if weights.sum() else None,
            "median_l2_majority": float(np.median(l2[majority])) if majority.any() else None,
            "num_examples": int(len(targets)),
            "num_successful_first_pass": int(hits[0].sum()),
            "attack_seconds": round(attack_seconds, 1),
            "seconds": round(time.time() - started, 1),
        }


# -- Algorithm 1 ------------------------------------------------------------------------------------------
def algorithm1(evaluate, epsilon, step, done=None, on_row=None):
    """Algorithm 1 over ``evaluate(test_rate) -> row`` (a dict with ``accuracy``).

    ``done``: rows already measured, by :func:`rate_key` (skipped); ``on_row(row, rows)`` after each new row.
    Returns ``(rows, chosen_test_rate, a_max)``; every row gets ``meets_accuracy``.
    """
    epsilon, step = check_search(epsilon, step)
    done = done or {}
    rows, a_max = [], None
    for rate in search_rates(step):
        row = done.get(rate_key(rate))
        fresh = row is None
        if fresh:
            row = evaluate(rate)
        if a_max is None:
            a_max = row["accuracy"]
        row["meets_accuracy"] = bool(row["accuracy"] >= a_max - epsilon - 1e-12)
        rows.append(row)
        if fresh and on_row:
            on_row(row, rows)
        if not row["meets_accuracy"]:
            break
    chosen = max(row["test_rate"] for row in rows if row["meets_accuracy"])
    return rows, chosen, a_max


# -- resumable result files ---------------------------------------------------------------------------
def _resume(path, settings, growable=()):
    """Rows of an earlier run with the same settings at ``path`` (by key); ConfigError on other settings.

    The list-valued settings named in ``growable`` may gain entries (a grid given one more model or test rate
    measures only the new cells) but not lose or change any: every earlier entry must still be there."""
    if not os.path.exists(path):
        return {}
    try:
        previous = fileio.read_json(path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read earlier results {path!r}: {e}") from None
    old = previous.get("settings") or {}
    fileio.check_same_settings(old, settings, sorted((set(old) | set(settings)) - set(growable)),
                               f"{path!r} holds results", "use another output or the original settings to resume")
    for key in growable:
        missing = [entry for entry in old.get(key, []) if entry not in settings.get(key, [])]
        if missing:
            raise ConfigError(f"{path!r} holds results for {key} {missing} that this run does not have (a changed "
                              f"model file or a removed entry); entries may only be added: use another output")
    return {rate_key(r["test_rate"], r["train_rate"] if "grid" in settings else None): r for r in previous["rows"]}


def run_search(evaluator, output, settings, epsilon, step, log=print):
    """Algorithm 1 with rows saved to ``output`` (JSON) as they finish; returns the result dict."""
    epsilon, step = check_search(epsilon, step)
    settings = dict(settings, epsilon=epsilon, step=step)
    done = _resume(output, settings)
    if done:
        log(f"resuming: {len(done)} finished row(s) in {output}")
    started = time.time()

    def save(row, rows):
        fileio.write_json(output, {"kind": "defensive_dropout_search", "settings": settings, "rows": rows,
                                   "finished": False})
        log(f"r' = {row['test_rate']:g}: test accuracy {row['accuracy']:.4f}, ASR {row['asr']:.4f}, mean L2 "
            f"{_fmt(row['mean_l2'])}, {row['seconds']:.0f} s")

    def evaluate(rate):
        log(f"r' = {rate:g}: measuring (train rate {evaluator.train_rate:g})")
        return evaluator(rate)

    rows, chosen, a_max = algorithm1(evaluate, epsilon, step, done, save)
    result = {"kind": "defensive_dropout_search", "settings": settings, "rows": rows, "finished": True,
              "a_max": a_max, "accuracy_threshold": a_max - epsilon, "chosen_test_rate": chosen,
              "seconds_this_run": round(time.time() - started, 1)}
    fileio.write_json(output, result)
    return result


def run_grid(evaluators, test_rates, output, settings, log=print):
    """Every (train rate, test rate) cell, saved to ``output`` as it finishes; returns the result dict."""
    rates = sorted({round(check_rate(r, "test rate"), RATE_DIGITS) for r in test_rates})
    settings = dict(settings, grid=True, test_rates=rates)
    done = _resume(output, settings, growable=("models", "test_rates"))
    if done:
        log(f"resuming: {len(done)} finished cell(s) in {output}")
    cells = []
    total = len(evaluators) * len(rates)
    for evaluator in evaluators:
        for rate in rates:
            key = rate_key(rate, evaluator.train_rate)
            tag = f"[{len(cells) + 1}/{total}] train {evaluator.train_rate:g}, test {rate:g}"
            if key in done:
                cells.append(done[key])
                log(f"{tag}: already measured, skipped")
                continue
            log(f"{tag}: measuring")
            cells.append(evaluator(rate))
            fileio.write_json(output, {"kind": "defensive_dropout_grid", "settings": settings, "rows": cells,
                                       "finished": False})
            row = cells[-1]
            log(f"{tag}: test accuracy {row['accuracy']:.4f}, ASR {row['asr']:.4f}, mean L2 {_fmt(row['mean_l2'])}, "
                f"{row['seconds']:.0f} s")
    result = {"kind": "defensive_dropout_grid", "settings": settings, "rows": cells, "finished": True}
    fileio.write_json(output, result)
    return result


# -- reports ----------------------------------------------------------------------------------------------
def _fmt(value, digits=3):
    return "-" if value is None else f"{value:.{digits}f}"


def search_markdown(result):
    """Markdown table of an Algorithm-1 run, with the chosen r'."""
    rows = [[f"{r['test_rate']:g}", f"{100 * r['accuracy']:.2f}% +- {100 * r['accuracy_std']:.2f}",
             reporting.percent(r["asr"]), reporting.percent(r["asr_majority"]), _fmt(r["mean_l2"]),
             "yes" if r["meets_accuracy"] else "**no** (stop)", f"{r['seconds']:.0f}"] for r in result["rows"]]
    s = result["settings"]
    table = reporting.markdown_table(["test rate r'", "test accuracy", "ASR (single pass)", "ASR (majority)",
                                      "mean L2 of successes", f">= a_max - {s['epsilon']:g}", "time (s)"], rows)
    return (f"{table}\n\nTrain rate r = {result['rows'][0]['train_rate']:g}; a_max = "
            f"{100 * result['a_max']:.2f}% (r' = 0); threshold {100 * result['accuracy_threshold']:.2f}%; "
            f"**chosen r' = {result['chosen_test_rate']:g}**.\n")


def grid_tables(result):
    """Markdown tables (rows: train rate, columns: test rate) of ASR, test accuracy and mean L2."""
    cells = result["rows"]
    train_rates = sorted({c["train_rate"] for c in cells})
    test_rates = result["settings"]["test_rates"]
    lookup = {(c["train_rate"], c["test_rate"]): c for c in cells}
    parts = []
    for title, field, fmt in (("ASR (single pass)", "asr", reporting.percent),
                              ("test accuracy", "accuracy", reporting.percent),
                              ("mean L2 of successes", "mean_l2", _fmt)):
        rows = [[f"train {r:g}"] + [fmt(lookup[(r, t)][field]) if (r, t) in lookup and lookup[(r, t)][field] is not None
                                    else "-" for t in test_rates] for r in train_rates]
        parts.append(f"{title}:\n\n" + reporting.markdown_table(["dropout rate"] + [f"test {t:g}" for t in test_rates], rows))
    return "\n\n".join(parts) + "\n"


def plot_search(result, path):
    rates = [r["test_rate"] for r in result["rows"]]
    reporting.plot_lines(path, {"test accuracy": (rates, [r["accuracy"] for r in result["rows"]]),
                                "ASR (single pass)": (rates, [r["asr"] for r in result["rows"]])},
                         "test dropout rate r'", "fraction",
                         f"Algorithm 1, train rate {result['rows'][0]['train_rate']:g}", ylim=(0, 1.02))


def plot_grid(result, prefix):
    """Figure 3 style: one PNG per quantity, a curve per train rate over the test rate; returns the paths."""
    paths = {}
    cells = result["rows"]
    for field, label in (("accuracy", "test accuracy"), ("asr", "ASR (single pass)"), ("mean_l2", "mean L2 of successes")):
        series = {}
        for r in sorted({c["train_rate"] for c in cells}):
            row = sorted((c for c in cells if c["train_rate"] == r and c[field] is not None), key=lambda c: c["test_rate"])
            series[f"train {r:g}"] = ([c["test_rate"] for c in row], [c[field] for c in row])
        paths[field] = f"{prefix}_{field}.png"
        reporting.plot_lines(paths[field], series, "test dropout rate r'", label, label)
    return paths


def gradient_histograms(model, x, target, test_rates, samples, pixels=3, seed=0):
    """Defensive-dropout Figure 4: ``samples`` input gradients (C&W margin, fresh masks) of the one image ``x`` at
    each test rate r' (panels a-e) and with SAP (panel f) on the same trained model, at the ``pixels`` input
    dimensions where the model without test-time dropout has its largest gradient.

    Returns {"pixels", "image_shape", "panels": [{"label", "samples": (samples, pixels) list}]} (panels in order)."""
    keras.utils.set_random_seed(seed)
    plain = baselines.with_defensive_dropout(model, 0.0)
    chosen = des.steepest_pixels(plain, x, target, pixels)
    variants = [(f"dropout r' = {rate:g}", baselines.with_defensive_dropout(model, rate)) for rate in test_rates]
    panels = [{"label": label, "samples": des.gradients_at(variant, x, target, chosen, samples).tolist()}
              for label, variant in variants + [("SAP", baselines.with_sap(plain))]]
    return {"pixels": chosen, "image_shape": list(x.shape[1:]), "panels": panels}


def plot_gradient_histograms(result, path):
    des.plot_gradient_histograms(path, {p["label"]: np.array(p["samples"]) for p in result["panels"]},
                                 dim_names=des.pixel_names(result["pixels"], result["image_shape"]))


def parse_models(text):
    """``"r0.3:a.h5,r0.7:b.h5"`` (or a list of such items) -> [(0.3, "a.h5"), (0.7, "b.h5")]."""
    items = text if isinstance(text, (list, tuple)) else str(text).split(",")
    parsed = []
    for item in items:
        head, sep, path = str(item).strip().partition(":")
        if not sep or not head.lower().startswith("r") or not path:
            raise ConfigError(f"model {item!r} must be written r<train rate>:<path>, e.g. r0.3:runs/base_mnist.h5")
        try:
            rate = float(head[1:])
        except ValueError:
            raise ConfigError(f"model {item!r}: {head[1:]!r} is not a train rate") from None
        parsed.append((check_rate(rate, "train rate"), path))
    if not parsed:
        raise ConfigError("give at least one model as r<train rate>:<path>")
    if len({r for r, _ in parsed}) != len(parsed):
        raise ConfigError(f"models {text!r} repeat a train rate")
    return parsed
