"""Defensive dropout (Wang et al., ICCAD 2018): Algorithm 1 (section 3.4) and the (train rate x test rate)
grid of Figure 3 / Tables 3-6, resumable.

A model trained with dropout rate r after FC1 is wrapped once with
:func:`hrs_tf.defenses.dropout.with_defensive_dropout`; the test rate r' is then changed in place
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

Every row (a grid cell, a step of the search) is a cell of its own (:class:`.row_cells.DropoutRows`), computed on any
executor (:mod:`hrs_tf.experiments.execution`: in this process, or on Ray) and saved at once as one file in
``<output stem>_cells/``; the result file is assembled from them. A rerun with the same settings skips finished rows
(also those of a result file written before rows were cells), a rerun with other settings is refused. Every row is
drawn from its own seed (a function of the run seed and the rates), so a resumed run, or one whose rows were measured
in other processes in any order, measures what an uninterrupted local one would.
"""

import dataclasses
import hashlib
import os
import time

import keras
import numpy as np

from hrs_tf import checks, evaluation, fileio
from hrs_tf import data as data_module
from hrs_tf.defenses.dropout import dropout_after_fc1, with_defensive_dropout
from hrs_tf.defenses.sap import with_sap
from hrs_tf.errors import ConfigError, ModelError
from hrs_tf.evaluation import des, metrics, scoring
from hrs_tf.layers import stochastic
from hrs_tf.models import serialization

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
    epsilon, step = checks.number(epsilon, "epsilon"), checks.number(step, "step")
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
        existing = dropout_after_fc1(model)
        if existing is None and train_rate is None:
            raise ModelError(f"model {model.name!r} has no Dropout layer after 'fc1'; defensive dropout needs a model "
                             "trained with dropout (or give its train rate 0 explicitly)")
        if existing is not None and train_rate is not None and abs(existing.rate - train_rate) > 1e-6:
            raise ConfigError(f"model {model.name!r} was trained with dropout {existing.rate:g}, not {train_rate:g}")
        self.model = with_defensive_dropout(model, 0.0, train_rate=None if existing is not None else train_rate)
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
        stochastic.reseed(self.model, seed)
        with stochastic.randomness(self.model, stochastic.RANDOM):
            accuracy = metrics.repeated_accuracy(self.model, self.accuracy_x, self.accuracy_y, self.repeats)
            idx, targets = evaluation.make_pairs(self.y, "all", num_classes=int(self.model.output_shape[-1]))
            crafted = time.time()
            x = self.x[idx]
            x_adv = evaluation.run_attack(self.model, self.attack, x, targets, True, setting=self.setting,
                                          eot_samples=self.eot_samples, batch_size=self.batch_size, seed=seed,
                                          progress=self.progress, **self.attack_kwargs)
            attack_seconds = time.time() - crafted
        judged = scoring.judge(self.model, x_adv, targets, True, self.passes)
        hits, majority = judged["single"], judged["vote"]  # (passes, pairs), (pairs,)
        l2 = scoring.distortions(x, x_adv)["l2"]
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


# -- the models a run measures ------------------------------------------------------------------------------
class ModelEvaluators:
    """The :class:`Evaluator` s of model files ``models`` [(train rate or None, path)], each made (its model loaded)
    the first time one of its rows is measured: a worker loads only the models of the rows it measures.

    ``measure``: the Evaluator's settings (attack, attack_kwargs, num_images, accuracy_images, repeats, ...). Only
    the test images of ``dataset`` are kept; pickled (a :class:`~hrs_tf.experiments.execution.Recipe`), it is its
    description alone: absolute model paths and settings, no loaded model, progress lines printed."""

    def __init__(self, dataset, models, progress=print, **measure):
        self.dataset = dataclasses.replace(dataset, x_train=dataset.x_train[:0], y_train=dataset.y_train[:0])
        self.models = [(rate, os.path.abspath(path)) for rate, path in models]
        self.progress, self.measure = progress, measure
        self._made = {}

    def __len__(self):
        return len(self.models)

    def __getitem__(self, index):
        if not 0 <= index < len(self.models):
            raise IndexError(index)
        if index not in self._made:
            rate, path = self.models[index]
            model = serialization.load_model(path)
            evaluation.check_model_fits(model, self.dataset)
            self._made[index] = Evaluator(model, self.dataset, train_rate=rate, progress=self.progress, **self.measure)
        return self._made[index]

    def __getstate__(self):
        return dict(self.__dict__, _made={}, progress=print)

    def settings(self):
        """The settings a result file is stored under (loads every model: their train rates)."""
        m, evaluators = self.measure, [self[i] for i in range(len(self))]
        settings = {"dataset": self.dataset.name, "attack": m["attack"], "attack_settings": m["attack_kwargs"],
                    "num_images": m["num_images"], "accuracy_images": len(evaluators[0].accuracy_x),
                    "repeats": evaluators[0].repeats, "passes": evaluators[0].passes,
                    "batch_size": evaluators[0].batch_size, "seed": evaluators[0].seed,
                    "models": [{"train_rate": e.train_rate, "sha1": file_digest(path)}
                               for e, (_, path) in zip(evaluators, self.models)]}
        setting = evaluators[0].setting
        if setting != "whitebox":  # (absent: white-box, the paper's setting)
            settings.update(setting=setting, **({"eot_samples": evaluators[0].eot_samples} if setting == "eot" else {}))
        return settings


# -- Algorithm 1 ------------------------------------------------------------------------------------------
def search_state(done, epsilon, step):
    """Where Algorithm 1 stands given the rows ``done`` (by :func:`rate_key`): ``(rows, next rate, a_max)``, the
    rows in search order each marked ``meets_accuracy``, and the test rate to measure next (None: stopped)."""
    rows, a_max = [], None
    for rate in search_rates(step):
        row = done.get(rate_key(rate))
        if row is None:
            return rows, rate, a_max
        if a_max is None:
            a_max = row["accuracy"]
        row["meets_accuracy"] = bool(row["accuracy"] >= a_max - epsilon - 1e-12)
        rows.append(row)
        if not row["meets_accuracy"]:
            break
    return rows, None, a_max


def algorithm1(evaluate, epsilon, step, done=None, on_row=None):
    """Algorithm 1 over ``evaluate(test_rate) -> row`` (a dict with ``accuracy``).

    ``done``: rows already measured, by :func:`rate_key` (skipped); ``on_row(row, rows)`` after each new row.
    Returns ``(rows, chosen_test_rate, a_max)``; every row gets ``meets_accuracy``.
    """
    epsilon, step = check_search(epsilon, step)
    done = dict(done or {})
    rows, rate, a_max = search_state(done, epsilon, step)
    while rate is not None:
        done[rate_key(rate)] = evaluate(rate)
        rows, rate, a_max = search_state(done, epsilon, step)
        if on_row:
            on_row(rows[-1], rows)
    chosen = max(row["test_rate"] for row in rows if row["meets_accuracy"])
    return rows, chosen, a_max


def run_search(evaluator, output, settings, epsilon, step, log=print, executor=None):
    """Algorithm 1 with each row a cell (:class:`.row_cells.DropoutRows`) on ``executor``; returns the result dict.
    ``evaluator``: an :class:`Evaluator` (local only) or the :class:`ModelEvaluators` of one model file."""
    from hrs_tf.experiments.defensive_dropout.row_cells import DropoutRows

    evaluators = evaluator if isinstance(evaluator, ModelEvaluators) else [evaluator]
    if len(evaluators) != 1:
        raise ConfigError(f"Algorithm 1 searches one model, not {len(evaluators)}")
    return DropoutRows(evaluators, output, settings, epsilon=epsilon, step=step, log=log).run(executor)


def run_grid(evaluators, test_rates, output, settings, log=print, executor=None):
    """Every (train rate, test rate) cell (:class:`.row_cells.DropoutRows`) on ``executor``; returns the result dict."""
    from hrs_tf.experiments.defensive_dropout.row_cells import DropoutRows

    return DropoutRows(evaluators, output, settings, test_rates=test_rates, log=log).run(executor)


def gradient_histograms(model, x, target, test_rates, samples, pixels=3, seed=0):
    """Defensive-dropout Figure 4: ``samples`` input gradients (C&W margin, fresh masks) of the one image ``x`` at
    each test rate r' (panels a-e) and with SAP (panel f) on the same trained model, at the ``pixels`` input
    dimensions where the model without test-time dropout has its largest gradient.

    Returns {"pixels", "image_shape", "panels": [{"label", "samples": (samples, pixels) list}]} (panels in order)."""
    keras.utils.set_random_seed(seed)
    plain = with_defensive_dropout(model, 0.0)
    chosen = des.steepest_pixels(plain, x, target, pixels)
    variants = [(label, with_defensive_dropout(model, rate)) for label, rate in zip(histogram_labels(test_rates),
                                                                                    test_rates)]
    panels = [{"label": label, "samples": des.gradients_at(variant, x, target, chosen, samples).tolist()}
              for label, variant in variants + [("SAP", with_sap(plain))]]
    return {"pixels": chosen, "image_shape": list(x.shape[1:]), "panels": panels, "seed": int(seed)}


def histogram_labels(test_rates):
    """The panel labels of :func:`gradient_histograms` (SAP's panel not included)."""
    return [f"dropout r' = {rate:g}" for rate in test_rates]


def stored_gradient_histograms(path, model_file, test_rates, samples, seed):
    """The :func:`gradient_histograms` record at ``path`` when it was made from ``model_file`` with these settings
    (the same command run again redraws its figure without sampling again); None when there is no file; a
    ConfigError naming the first setting that differs otherwise (the file is left as it is)."""
    if not os.path.exists(path):
        return None
    record = fileio.read_json(path)
    made = {"kind": record.get("kind"), "model (sha1)": record.get("sha1"), "gradient_samples": record.get("samples"),
            "panels": [p.get("label") for p in record.get("panels", [])],
            "seed": record.get("seed", record.get("command_line", {}).get("seed", 0))}
    wanted = {"kind": "defensive_dropout_gradients", "model (sha1)": file_digest(model_file),
              "gradient_samples": int(samples), "panels": histogram_labels(test_rates) + ["SAP"], "seed": int(seed)}
    for key, value in wanted.items():
        if made[key] != value:
            raise ConfigError(f"{path} holds a result made with other settings ({key}: {made[key]!r} there vs "
                              f"{value!r} now): remove it or choose another --output")
    return record


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
        parsed.append((checks.rate(rate, "train rate"), path))
    if not parsed:
        raise ConfigError("give at least one model as r<train rate>:<path>")
    if len({r for r, _ in parsed}) != len(parsed):
        raise ConfigError(f"models {text!r} repeat a train rate")
    return parsed
