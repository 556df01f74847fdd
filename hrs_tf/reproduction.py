"""Reproduction of the HRS paper's evaluation on one data set (section 6; appendices C, D, F), resumable.

Defenses (section 6.1), all on the same base CNN: Base, SAP (exact, and the approximation the HRS
authors used), defensive dropout 0.1 / 0.3 (test-time dropout on the base model, no retraining),
Gaussian noise (random self-ensemble, trained with noise), Madry adversarial training, HRS 5x5 and
10x10. Experiments:

- ``accuracy``   clean test accuracy, each image its own randomness (Table A2);
- ``deviation``  input-gradient deviation (Table 1 / Table A2 "Dev.") and gradient histograms (Figure 1);
- ``attacks``    ASR of PGD and CW-PGD (the paper's own Adam variants, ``hrs_pgd`` / ``hrs_cw_pgd``) against
                 eps under white-box, EOT(n) and fixed randomness (Figure 4, Figures A8 / A9);
- ``fgsm_cw``    FGSM against eps and C&W-L2 against kappa, white-box (Figures A6 / A7);
- ``des``        strength sweeps (test dropout rate, Gaussian sigmas, HRS channel counts), their DES against
                 FGSM / PGD / CW-PGD at one eps, mean DES and linear fits (Table 2, Figure 2);
- ``ablation``   HRS with 1, 2 and 3 switching blocks of 5 channels under CW-PGD (Table A3).

Every attack is targeted at all 9 wrong classes of the first N test images; success is one fresh
stochastic pass predicting the target (``asr``), also reported as the majority of ``passes`` passes.
Models are trained on demand by the project's resumable trainers; every result is one JSON "cell" written
atomically as soon as it is computed, so a killed run continues where it stopped.
"""

import dataclasses
import os
import re
import time

import numpy as np

from hrs_tf import (des, evaluation, fileio, hrs, hrs_training, metrics, paper_values, reporting, serialization, stochastic,
                    training)
from hrs_tf.errors import ConfigError

EPS_GRIDS = {  # in units of 1/255
    "mnist": (8, 16, 32, 48, 64),        # ends at the 64/255 of the paper's MNIST Figure 5
    "fashion_mnist": (2, 4, 8, 16, 32),  # no paper numbers; Fashion-MNIST models break at smaller eps
    "cifar10": (1, 2, 4, 6, 8),          # Figure 4
}
DES_EPS = {"mnist": 64, "fashion_mnist": 16, "cifar10": 8}
FGSM_GRIDS = {"mnist": (16, 32, 64, 96, 128), "fashion_mnist": (4, 8, 16, 32, 64), "cifar10": (1, 2, 4, 8, 16)}
GAUSSIAN_SWEEPS = {  # (init, inner) sigmas, the ranges of appendix C.5
    "mnist": ((0.1, 0.05), (0.2, 0.1), (0.325, 0.1625)),
    "fashion_mnist": ((0.1, 0.05), (0.2, 0.1), (0.325, 0.1625)),
    "cifar10": ((0.01, 0.005), (0.02, 0.01), (0.06, 0.03), (0.11, 0.055)),
}
ADV_EPS = {"mnist": 0.3, "fashion_mnist": 0.1, "cifar10": 2 / 255}

BASELINE_DEFENSES = ("Base", "SAP", "SAP (HRS variant)", "Dropout 0.1", "Dropout 0.3", "Gaussian", "Adv. training")
STOCHASTIC_ATTACK_SETTINGS = evaluation.PROTOCOL_SETTINGS  # whitebox, eot, fixed, derandomized
GRADIENT_ATTACKS = {"PGD": "hrs_pgd", "CW-PGD": "hrs_cw_pgd"}
DES_SWEEPS = ("dropout", "gaussian", "hrs")
NOT_RUN = "*No results: the `{experiment}` experiment has not been computed for this report.*\n"
EXPERIMENTS = ("accuracy", "deviation", "attacks", "fgsm_cw", "des", "ablation")
DETERMINISTIC = ("Base", "Adv. training")  # attacked white-box only: EOT and fixed randomness change nothing
HISTOGRAM_PIXELS = 3  # input dimensions shown in the gradient histograms (Figure 1)
# Plan values that change what a cell holds without being part of its key (a resume must keep them).
CONTENT_KEYS = ("dataset", "seed", "num_images", "eot_samples", "passes", "accuracy_repeats", "deviation_images",
                "deviation_samples", "base_epochs", "hrs_epochs", "gaussian_epochs", "adv_epochs", "adv_steps",
                "ablation_epochs", "ablation_channels", "sweep_epochs")


@dataclasses.dataclass(frozen=True)
class Plan:
    """The scale of a reproduction run (defaults: :func:`plan_for`)."""

    dataset: str
    eps_grid: tuple
    des_eps: float
    fgsm_grid: tuple
    gaussian_sweep: tuple
    adv_eps: float
    num_images: int = 50
    cw_confidences: tuple = (0.0, 5.0, 10.0, 20.0)
    eot_samples: int = 10
    passes: int = 10
    accuracy_repeats: int = 5
    deviation_images: int = 10
    deviation_samples: int = 200
    base_epochs: int = 40
    hrs_epochs: int = 40
    gaussian_epochs: int = 40
    sweep_epochs: int = 20
    adv_epochs: int = 20
    adv_steps: int = 10
    ablation_epochs: int = 10
    ablation_channels: int = 5
    dropout_sweep: tuple = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    hrs_sweep: tuple = (2, 3, 4, 5, 6, 8, 10)
    hrs_shapes: tuple = ((5, 5), (10, 10))
    des_sweeps: tuple = DES_SWEEPS  # which strength sweeps the ``des`` experiment runs
    des_max_accuracy_drop: float = 0.01
    defenses: tuple = None  # default: BASELINE_DEFENSES + one "HRS AxB" per hrs_shapes entry
    experiments: tuple = EXPERIMENTS
    seed: int = 0

    def ablation_shared_hrs(self):
        """The ``HRS kxk`` model that is also the 2-block ablation model (same channels and epochs), or None."""
        k = self.ablation_channels
        same = self.ablation_epochs == self.hrs_epochs and (k, k) in [tuple(s) for s in self.hrs_shapes]
        return f"HRS {k}x{k}" if same else None


def plan_for(dataset_name, **overrides):
    """The default plan of a data set, with ``overrides`` (e.g. ``num_images=20``)."""
    if dataset_name not in EPS_GRIDS:
        raise ConfigError(f"no reproduction plan for data set {dataset_name!r}")
    plan = Plan(dataset=dataset_name, eps_grid=tuple(e / 255 for e in EPS_GRIDS[dataset_name]),
                des_eps=DES_EPS[dataset_name] / 255, fgsm_grid=tuple(e / 255 for e in FGSM_GRIDS[dataset_name]),
                gaussian_sweep=GAUSSIAN_SWEEPS[dataset_name], adv_eps=ADV_EPS[dataset_name])
    try:
        plan = dataclasses.replace(plan, **overrides)
    except TypeError as e:
        raise ConfigError(f"bad reproduction setting: {e}") from None
    if not plan.hrs_shapes or any(len(s) != 2 or min(s) < 1 for s in plan.hrs_shapes):
        raise ConfigError(f"hrs_shapes={plan.hrs_shapes!r}: give one or more two-block shapes such as (5, 5)")
    hrs_names = tuple(f"HRS {a}x{b}" for a, b in plan.hrs_shapes)
    if plan.defenses is None:
        plan = dataclasses.replace(plan, defenses=BASELINE_DEFENSES + hrs_names)
    unknown = set(plan.defenses) - set(BASELINE_DEFENSES + hrs_names)
    if unknown:
        raise ConfigError(f"unknown defenses {sorted(unknown)}; choose from {', '.join(BASELINE_DEFENSES + hrs_names)}")
    unknown = set(plan.des_sweeps) - set(DES_SWEEPS)
    if unknown:
        raise ConfigError(f"unknown DES sweeps {sorted(unknown)}; choose from {', '.join(DES_SWEEPS)}")
    unknown = set(plan.experiments) - set(EXPERIMENTS)
    if unknown:
        raise ConfigError(f"unknown experiments {sorted(unknown)}; choose from {', '.join(EXPERIMENTS)}")
    if plan.num_images < 1 or plan.eot_samples < 1 or plan.passes < 1:
        raise ConfigError("num_images, eot_samples and passes must be at least 1")
    return plan


def json_ready(value):
    """Tuples to lists, recursively (what a JSON round trip gives), so stored and new plans compare equal."""
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    return value


def slug(text):
    return re.sub(r"[^A-Za-z0-9.=_-]+", "_", text).strip("_")


def eps_label(eps):
    return f"{eps * 255:g}/255"


class ModelStore:
    """The defended models of a reproduction, trained on demand (resumable trainers) and cached.

    ``existing``: {name: path} of already trained models to use instead of training (``Base`` -> a base
    ``.h5``; ``HRS 5x5`` / ``HRS 10x10`` -> an HRS run folder; ``Gaussian`` / ``Adv. training`` -> ``.h5``).
    """

    def __init__(self, dataset, plan, work_dir, existing=None, log=print):
        self.dataset, self.plan, self.log = dataset, plan, log
        self.dir = os.path.join(work_dir, "models")
        self.existing = dict(existing or {})
        self._cache = {}
        self._provenance_path = os.path.join(self.dir, "provenance.json")
        self.provenance = fileio.read_json(self._provenance_path) if os.path.exists(self._provenance_path) else {}

    def _path(self, name):
        return os.path.join(self.dir, name)

    def get(self, name):
        if name not in self._cache:
            self._cache[name] = self._build(name)
        return self._cache[name]

    def _saved(self, name, filename, train):
        """Loads ``filename`` (or the existing model given for ``name``), training and saving it first if missing."""
        path = self.existing.get(name) or self._path(filename)
        if not os.path.exists(path):
            self.log(f"training {name} -> {path}")
            model, record = train()
            serialization.save_model(model, path)
            fileio.write_json(os.path.splitext(path)[0] + ".json", record)
        self._record(name, path)
        return serialization.load_model(path)

    def _record(self, name, path):
        if self.provenance.get(name) != path:
            self.provenance[name] = path
            fileio.write_json(self._provenance_path, self.provenance)

    def _hrs_run(self, name, channels, epochs, reuse=None):
        folder = self.hrs_folder(name)
        if not os.path.exists(os.path.join(folder, hrs_training.SUMMARY_FILE)):
            self.log(f"training {name} -> {folder}")
            hrs_training.train_hrs(self.dataset, folder, channels, epochs, seed=self.plan.seed, verbose=2, log=self.log,
                                   reuse_block0_from=reuse if reuse and os.path.exists(reuse) else None)
        self._record(name, folder)
        return serialization.load_model(os.path.join(folder, hrs_training.MODEL_FILE))

    def hrs_folder(self, name):
        return self.existing.get(name) or self._path(slug(name.lower()))

    def training_epochs(self, name):
        """Epochs the model behind ``name`` was trained for, read from its training record ("-" if none)."""
        path = self.provenance.get(name)
        if path is None:
            return "-"
        record = (os.path.join(path, hrs_training.SUMMARY_FILE) if os.path.isdir(path)
                  else os.path.splitext(path)[0] + ".json")
        if not os.path.exists(record):
            return "-"
        epochs = fileio.read_json(record).get("epochs")
        if isinstance(epochs, list):
            return " + ".join(str(e) for e in epochs) + " (per block)"
        return "-" if epochs is None else str(epochs)

    def _build(self, name):
        from hrs_tf import adversarial_training, baselines

        plan, data = self.plan, self.dataset
        if name == "Base":
            return self._saved(name, "base.h5", lambda: training.train_base_model(
                data, epochs=plan.base_epochs, seed=plan.seed, verbose=2))  # one line per epoch
        if name == "SAP":
            return baselines.with_sap(self.get("Base"), "exact")
        if name == "SAP (HRS variant)":
            return baselines.with_sap(self.get("Base"), "hrs")
        match = re.fullmatch(r"Dropout ([0-9.]+)", name)
        if match:
            return baselines.with_defensive_dropout(self.get("Base"), float(match.group(1)))
        match = re.fullmatch(r"Gaussian( \(([0-9.]+), ([0-9.]+)\))?", name)
        if match:
            init, inner = ((float(match.group(2)), float(match.group(3))) if match.group(1)
                           else baselines.gaussian_defaults(data.name))
            epochs = plan.sweep_epochs if match.group(1) else plan.gaussian_epochs
            return self._saved(name, f"gaussian_{init:g}_{inner:g}_{epochs}ep.h5", lambda: baselines.train_gaussian_model(
                data, init, inner, seed=plan.seed, epochs=epochs, verbose=2))
        if name == "Adv. training":
            def train():
                model, record = adversarial_training.train_adversarial(
                    data, self._path("adv_checkpoint.h5"), plan.adv_eps, plan.adv_epochs, pgd_steps=plan.adv_steps,
                    seed=plan.seed, log=self.log)
                return model, record
            return self._saved(name, f"adv_eps{plan.adv_eps:.4f}.h5", train)
        match = re.fullmatch(r"HRS (\d+)x(\d+) of (\d+)x(\d+)", name)
        if match:  # a DES sweep member: the first channels of each block of a trained HRS model
            return hrs.subset_model(self.get(f"HRS {match.group(3)}x{match.group(4)}"),
                                    (int(match.group(1)), int(match.group(2))))
        match = re.fullmatch(r"HRS (\d+)x(\d+)", name)
        if match and (int(match.group(1)), int(match.group(2))) in [tuple(s) for s in plan.hrs_shapes]:
            shape = (int(match.group(1)), int(match.group(2)))
            smaller = sorted(tuple(s) for s in plan.hrs_shapes if s[0] < shape[0])
            reuse = self.hrs_folder(f"HRS {smaller[-1][0]}x{smaller[-1][1]}") if smaller else None
            return self._hrs_run(name, shape, plan.hrs_epochs, reuse)
        match = re.fullmatch(r"Ablation (\d) blocks", name)
        if match:
            blocks = int(match.group(1))
            return self._hrs_run(name, (plan.ablation_channels,) * blocks, plan.ablation_epochs)
        raise ConfigError(f"unknown defense {name!r}")


def ablation_names(plan):
    """The block-count ablation's models (Table A3): HRS with 1, 2 and 3 switching blocks; the 2-block one is
    the plan's ``HRS kxk`` model, with its cells, when that has the same channels and epochs."""
    return [(blocks == 2 and plan.ablation_shared_hrs()) or f"Ablation {blocks} blocks" for blocks in (1, 2, 3)]


def is_stochastic(model):
    return bool(stochastic.stochastic_layers(model))


class Reproduction:
    """Runs the experiments of a plan into ``work_dir`` (cells) and writes the report."""

    def __init__(self, dataset, plan, work_dir, existing=None, log=print):
        self.dataset, self.plan, self.work_dir, self.log = dataset, plan, work_dir, log
        self.models = ModelStore(dataset, plan, work_dir, existing, log)
        self._base_pixels = None
        self._read = {}  # path -> every stored cell read so far (a cell never changes once written)
        self._check_plan()

    def _check_plan(self):
        """Refuses to mix results: a cell is keyed by its defense, attack, setting and strength only, so every
        plan value that changes a cell's content without being in its key must stay as it was."""
        path = os.path.join(self.work_dir, "plan.json")
        plan = json_ready(dataclasses.asdict(self.plan))
        if os.path.exists(path):
            fileio.check_same_settings(fileio.read_json(path), plan, CONTENT_KEYS,
                                       f"{self.work_dir!r} holds a reproduction",
                                       "use another --work_dir or the original settings")
        fileio.write_json(path, plan)

    # -- cells --------------------------------------------------------------------------------------
    def cell(self, experiment, name, compute):
        path = os.path.join(self.work_dir, "cells", experiment, slug(name) + ".json")
        if os.path.exists(path):
            return fileio.read_json(path)
        self.log(f"[{experiment}] {name}")
        start = time.time()
        result = compute()
        result["cell"] = name
        result["seconds"] = round(time.time() - start, 2)
        fileio.write_json(path, result)
        return result

    def stored(self, experiment, name):
        path = os.path.join(self.work_dir, "cells", experiment, slug(name) + ".json")
        if path not in self._read:
            if not os.path.exists(path):
                return None
            self._read[path] = fileio.read_json(path)
        return self._read[path]

    def read_minutes(self):
        """(number of cells read with :meth:`stored`, their total compute time in minutes)."""
        return len(self._read), sum(cell.get("seconds", 0) for cell in self._read.values()) / 60

    def accuracy(self, defense, repeats=None):
        def compute():
            model = self.models.get(defense)
            result = metrics.clean_accuracy(model, self.dataset.x_test, self.dataset.y_test,
                                            repeats or self.plan.accuracy_repeats)
            return {"defense": defense, "accuracy": result}
        return self.cell("accuracy", defense, compute)

    def attack(self, defense, attack, setting, **kwargs):
        """One (defense, attack, setting, strength) cell; deterministic models are attacked white-box only."""
        if defense in DETERMINISTIC:
            setting = "whitebox"
        name = cell_name(defense, attack, setting, **kwargs)

        def compute():
            model = self.models.get(defense)
            if setting != "whitebox" and not is_stochastic(model):
                raise ConfigError(f"{defense!r} has no stochastic layer; only white-box attacks apply")
            return evaluation.first_n_all_targets(model, self.dataset, attack, self.plan.num_images, setting=setting,
                                                  eot_samples=self.plan.eot_samples, passes=self.plan.passes,
                                                  seed=self.plan.seed, progress=False, **kwargs)
        return self.cell("attacks", name, compute)

    def deviation(self, defense):
        def compute():
            x, y = self.dataset.x_test[:self.plan.deviation_images], self.dataset.y_test[:self.plan.deviation_images]
            value = des.gradient_deviation(self.models.get(defense), x, (y + 1) % 10, self.plan.deviation_samples)
            return {"defense": defense, "deviation": value, "images": int(len(x)), "samples": self.plan.deviation_samples}
        return self.cell("deviation", defense, compute)

    def gradient_histogram(self, defense):
        """Figure 1: ``deviation_samples`` input gradients (CW-PGD margin, separate passes) of the first test
        image toward (label + 1) mod 10, at the pixels where the base model's gradient is largest (the same
        pixels for every defense)."""
        def compute():
            x, target = des.histogram_image(self.dataset)
            if self._base_pixels is None:  # the same pixels for every defense: computed once
                self._base_pixels = des.steepest_pixels(self.models.get("Base"), x, target, HISTOGRAM_PIXELS)
            pixels = self._base_pixels
            grads = des.gradients_at(self.models.get(defense), x, target, pixels, self.plan.deviation_samples)
            return {"defense": defense, "pixels": pixels, "image_shape": list(x.shape[1:]), "samples": grads.tolist()}
        return self.cell("gradients", defense, compute)

    # -- experiments ------------------------------------------------------------------------------
    def run(self, experiments=None):
        experiments = experiments or self.plan.experiments
        plan = self.plan
        for defense in plan.defenses:
            self.models.get(defense)  # train what is missing first (each trainer is resumable)
        if "accuracy" in experiments:
            for defense in plan.defenses:
                self.accuracy(defense)
        if "deviation" in experiments:
            for defense in plan.defenses:
                self.deviation(defense)
                if defense not in DETERMINISTIC:
                    self.gradient_histogram(defense)
        if "attacks" in experiments:
            for label, attack in GRADIENT_ATTACKS.items():
                for setting in STOCHASTIC_ATTACK_SETTINGS:
                    for eps in plan.eps_grid:
                        for defense in plan.defenses:
                            self.attack(defense, attack, setting, eps=eps)
        if "fgsm_cw" in experiments:
            for defense in plan.defenses:
                for eps in plan.fgsm_grid:
                    self.attack(defense, "fgsm", "whitebox", eps=eps)
                for kappa in plan.cw_confidences:
                    self.attack(defense, "hrs_cw_l2", "whitebox", confidence=kappa)
        if "des" in experiments:
            for defense in ["Base"] + self.sweep_defenses():
                self.accuracy(defense, repeats=2 if defense != "Base" else None)
                for attack in ("fgsm", "hrs_pgd", "hrs_cw_pgd"):
                    self.attack(defense, attack, "whitebox", eps=plan.des_eps)
        if "ablation" in experiments:
            for name in ablation_names(plan):
                self.accuracy(name)
                for eps in plan.eps_grid:
                    self.attack(name, "hrs_cw_pgd", "whitebox", eps=eps)

    def planned_models(self):
        """Every model name the plan's experiments use (Base always: SAP and dropout wrap it)."""
        plan = self.plan
        names = {"Base", *plan.defenses}
        if "des" in plan.experiments:
            names.update(self.sweep_defenses())
        if "ablation" in plan.experiments:
            names.update(ablation_names(plan))
        return names

    def trained_here(self):
        """What the command trains itself (models not given with ``existing``), with its epochs, as one line."""
        plan, planned, given = self.plan, self.planned_models(), self.models.existing
        hrs_names = [f"HRS {a}x{b}" for a, b in plan.hrs_shapes]
        parts = [(f"base {plan.base_epochs}", "Base" not in given),
                 (f"HRS {plan.hrs_epochs} per block", any(n in planned and n not in given for n in hrs_names)),
                 (f"Gaussian {plan.gaussian_epochs}", "Gaussian" in planned and "Gaussian" not in given),
                 (f"Gaussian sweep {plan.sweep_epochs}", any(n.startswith("Gaussian (") for n in planned)),
                 (f"adversarial training {plan.adv_epochs} (PGD-{plan.adv_steps}, eps {eps_label(plan.adv_eps)})",
                  "Adv. training" in planned and "Adv. training" not in given),
                 (f"ablation {plan.ablation_epochs} per block", "ablation" in plan.experiments)]
        return ", ".join(text for text, trained in parts if trained) or "none: every model was given"

    def sweep_defenses(self):
        plan = self.plan
        names = []
        if "dropout" in plan.des_sweeps:
            names += [f"Dropout {r:g}" for r in plan.dropout_sweep]
        if "gaussian" in plan.des_sweeps:
            names += [f"Gaussian ({i:g}, {j:g})" for i, j in plan.gaussian_sweep]
        if "hrs" in plan.des_sweeps:  # subsets of the largest HRS model, named after it (cells stay unambiguous)
            a, b = max(plan.hrs_shapes)
            names += [f"HRS {k}x{k}" if (k, k) == (a, b) else f"HRS {k}x{k} of {a}x{b}"
                      for k in plan.hrs_sweep if k <= min(a, b)]
        return names

    # -- report -------------------------------------------------------------------------------------
    def report(self, docs_dir, command, notes=None):
        """Writes ``docs_dir/reproduce_hrs_<dataset>.md`` and its plots from the stored cells (missing ones
        are shown as "-"); returns the markdown text."""
        return write_report(self, docs_dir, command, notes)


def _get(cell, *keys, default=None):
    for key in keys:
        if cell is None or key not in cell:
            return default
        cell = cell[key]
    return cell


def cell_name(defense, attack, setting, **kwargs):
    """The key of an attack cell: attack, setting, strength and defense."""
    return f"{attack}|{setting}|" + "|".join(f"{k}={v:.6g}" for k, v in sorted(kwargs.items())) + f"|{defense}"


def _asr(rep, defense, attack, setting, **kwargs):
    setting = "whitebox" if defense in DETERMINISTIC else setting
    return _get(rep.stored("attacks", cell_name(defense, attack, setting, **kwargs)), "results", "asr")


def _fmt(value, scale=100, digits=1, suffix="%"):
    return "-" if value is None else f"{scale * value:.{digits}f}{suffix}"


def write_report(rep, docs_dir, command, notes=None):
    plan, ds = rep.plan, rep.plan.dataset
    figures = os.path.join(docs_dir, f"reproduce_hrs_{ds}")
    rel = os.path.basename(figures)
    paper_acc = paper_values.HRS_TABLE_A2_TEST_ACCURACY.get(ds, {})
    paper_dev = paper_values.HRS_TABLE_A2_DEVIATION_E4.get(ds, {})
    parts = [f"# HRS paper reproduced on {ds}\n", f"Generated by:\n\n```\n{command}\n```\n"]
    if notes:
        parts.append(notes.strip() + "\n")
    parts.append("## Settings\n")
    parts.append(reporting.markdown_table(["setting", "value"], [
        ["images attacked", f"first {plan.num_images} test images x 9 wrong targets = {9 * plan.num_images} pairs"],
        ["eps grid (L-inf)", ", ".join(eps_label(e) for e in plan.eps_grid)],
        ["PGD / CW-PGD", "the paper's: Adam lr 0.1, 100 steps, start max(x - eps, 0), final iterate"],
        ["EOT", f"{plan.eot_samples} separate passes per gradient"],
        ["fixed randomness", "crafted with every stochastic layer off (HRS: channel 0 of every block)"],
        ["derandomized (not in the paper)", "crafted **and judged** with every stochastic layer off: the trained "
                                            "weights alone, without test-time randomness"],
        ["success", f"one fresh stochastic pass predicts the target (majority of {plan.passes} also stored)"],
        ["epochs of models trained by this command", rep.trained_here()],
    ]))
    planned_models = rep.planned_models()
    parts.append("\nTrained models used (the others are derived from them: SAP and dropout wrap Base without retraining, "
                 "`HRS kxk of AxB` keeps the first k channels of each block of HRS AxB):\n")
    parts.append(reporting.markdown_table(["model", "file", "training epochs (from its record)"], [
        [name, f"`{path}`", rep.models.training_epochs(name)] for name, path in rep.models.provenance.items()
        if name in planned_models] or [["-"] * 3]))

    # Table A2: accuracy and deviation.
    parts.append("\n## Test accuracy and input-gradient deviation (Table A2, Table 1)\n")
    rows = []
    for d in plan.defenses:
        acc = _get(rep.stored("accuracy", d), "accuracy")
        dev = _get(rep.stored("deviation", d), "deviation")
        paper_key = d.replace("SAP (HRS variant)", "SAP")
        rows.append([d, "-" if acc is None else f"{100 * acc['mean']:.2f}% +- {100 * acc['std']:.2f}",
                     _fmt(paper_acc.get(paper_key), digits=2), "-" if dev is None else f"{dev * 1e4:.1f}",
                     "-" if dev is None else f"{dev * 1e4 / 255:.2f}",
                     "-" if paper_key not in paper_dev else f"{paper_dev[paper_key]:.2f}"])
    parts.append(reporting.markdown_table(["defense", "test accuracy (ours)", "paper", "Dev. e-4 (ours, per unit of [0, 1])",
                                           "Dev. e-4 (ours, per grey level = / 255)", "paper Dev. e-4"], rows))
    parts.append(f"\nAccuracy: full test set, each image its own randomness, {plan.accuracy_repeats} passes (mean +- std). "
                 f"Dev.: std of the input gradient of the CW-PGD margin over {plan.deviation_samples} passes, mean over "
                 f"input dimensions and the first {plan.deviation_images} test images. The paper does not state the unit "
                 "of its gradient; per grey level (our gradient / 255, inputs being pixels / 255) is on the scale of its "
                 "numbers, per unit of the [0, 1] input is not.\n")
    histograms = {d: cell for d in plan.defenses if (cell := rep.stored("gradients", d))}
    if histograms:
        first = next(iter(histograms.values()))
        names = des.pixel_names(first["pixels"], first["image_shape"])
        des.plot_gradient_histograms(os.path.join(figures, "gradient_histograms.png"),
                                     {d: np.array(c["samples"]) for d, c in histograms.items()}, dim_names=names)
        parts.append(f"\n![gradient histograms]({rel}/gradient_histograms.png)\n\nInput-gradient samples (Figure 1): "
                     f"{plan.deviation_samples} passes of the CW-PGD margin gradient on the first test image, target "
                     f"(label + 1) mod 10, at the {len(names)} pixels where the base model's gradient is largest; one "
                     "panel per stochastic defense, same pixels in each.\n")

    # Figure 4 / A8 / A9.
    xs = [e * 255 for e in plan.eps_grid]
    parts.append("## ASR against eps (Figure 4; Figures A8 / A9)\n")
    for label, attack in GRADIENT_ATTACKS.items():
        panels, rows = {}, []
        for setting in STOCHASTIC_ATTACK_SETTINGS:
            series = {}
            for d in plan.defenses:
                ys = [_asr(rep, d, attack, setting, eps=e) for e in plan.eps_grid]
                if all(y is not None for y in ys):
                    series[d] = (xs, ys)
                rows.append([d, setting] + [_fmt(y) for y in ys])
            panels[f"{label}, {setting}"] = series
        png = f"{rel}/{slug(label.lower())}.png"
        reporting.plot_panels(os.path.join(docs_dir, png), panels, "eps (x/255)", "attack success rate", ylim=(-0.02, 1.02))
        parts.append(f"### {label}\n\n![{label} ASR]({png})\n")
        parts.append(reporting.markdown_table(["defense", "setting"] + [eps_label(e) for e in plan.eps_grid], rows) + "\n")

    # FGSM and CW (Figures A6 / A7).
    parts.append("## FGSM and C&W-L2, white-box (Figures A6 / A7)\n")
    fgsm_rows, cw_rows, fgsm_series, cw_series = [], [], {}, {}
    for d in plan.defenses:
        f = [_asr(rep, d, "fgsm", "whitebox", eps=e) for e in plan.fgsm_grid]
        c = [_asr(rep, d, "hrs_cw_l2", "whitebox", confidence=k) for k in plan.cw_confidences]
        l2 = [_get(rep.stored("attacks", cell_name(d, "hrs_cw_l2", "whitebox", confidence=k)), "results",
                   "distortion_of_successful", "l2", "mean") for k in plan.cw_confidences]
        fgsm_rows.append([d] + [_fmt(v) for v in f])
        cw_rows.append([d] + [f"{_fmt(v)} ({'-' if m is None else f'{m:.2f}'})" for v, m in zip(c, l2)])
        if all(v is not None for v in f):
            fgsm_series[d] = ([e * 255 for e in plan.fgsm_grid], f)
        if all(v is not None for v in c):
            cw_series[d] = (list(plan.cw_confidences), c)
    if fgsm_series or cw_series:
        png = f"{rel}/fgsm_cw.png"
        reporting.plot_panels(os.path.join(docs_dir, png), {"FGSM (x: eps x 255)": fgsm_series,
                                                            "C&W-L2 (x: kappa)": cw_series},
                              "strength", "attack success rate", ylim=(-0.02, 1.02))
        parts.append(f"![FGSM and CW]({png})\n")
    else:
        parts.append(NOT_RUN.format(experiment="fgsm_cw"))
    parts.append(reporting.markdown_table(["defense"] + [f"FGSM {eps_label(e)}" for e in plan.fgsm_grid], fgsm_rows))
    parts.append("\n" + reporting.markdown_table(["defense"] + [f"CW kappa={k:g} (mean L2)" for k in plan.cw_confidences],
                                                 cw_rows) + "\n")

    # DES (Table 2, Figure 2).
    parts.append(f"## Defense efficiency at eps {eps_label(plan.des_eps)} (Table 2, Figure 2)\n")
    base_acc = _get(rep.stored("accuracy", "Base"), "accuracy", "mean")
    families = {"Dropout": [], "Gaussian": [], "HRS": []}
    for d in rep.sweep_defenses():
        family = d.split(" ")[0]
        families.setdefault(family, []).append(d)
    des_rows, panels, fit_rows = [], {}, []
    paper_des = paper_values.HRS_TABLE_2_MEAN_DES.get(ds, {})
    for label, attack in (("FGSM", "fgsm"), ("PGD", "hrs_pgd"), ("CW-PGD", "hrs_cw_pgd")):
        base_asr = _asr(rep, "Base", attack, "whitebox", eps=plan.des_eps)
        panel = {}
        for family, names in families.items():
            points = []
            for d in names:
                acc = _get(rep.stored("accuracy", d), "accuracy", "mean")
                asr = _asr(rep, d, attack, "whitebox", eps=plan.des_eps)
                if acc is not None and asr is not None:
                    points.append({"strength": d, "accuracy": acc, "defense_rate": 1 - asr})
            if base_acc is None or base_asr is None or not points:
                continue
            base = {"accuracy": base_acc, "defense_rate": 1 - base_asr}
            in_range = des.mean_des(points, base, accuracy_drop_range=(-1.0, plan.des_max_accuracy_drop))
            everything = des.mean_des(points, base)
            panel[family] = everything["points"]
            des_rows.append([label, family, "-" if in_range["mean"] is None else f"{in_range['mean']:.2f} (n={in_range['n']})",
                             f"{everything['mean']:.2f} (n={everything['n']})",
                             "-" if family not in paper_des else f"{paper_des[family][label]:.2f}"])
            xs_, ys_ = [p["accuracy_drop"] for p in everything["points"]], [p["defense_gain"] for p in everything["points"]]
            if len(set(xs_)) >= 2:
                fit = des.linear_fit(xs_, ys_)
                fit_rows.append([label, family, f"{fit['slope']:.2f}", f"{fit['intercept']:.3f}", f"{fit['r2']:.2f}"])
        if panel:
            png = f"{rel}/des_{slug(label.lower())}.png"
            des.plot_des(os.path.join(docs_dir, png), panel, f"{label} at {eps_label(plan.des_eps)}: defense gain vs accuracy drop")
            panels[label] = png
    if not des_rows:
        parts.append(NOT_RUN.format(experiment="des"))
    parts.append(single_setting_des(rep, base_acc))
    parts.append(reporting.markdown_table(
        ["attack", "defense", f"mean DES, accuracy drop <= {100 * plan.des_max_accuracy_drop:g} pt", "mean DES, all settings",
         "paper Table 2"], des_rows))
    parts.append(f"\nThe strength settings (white-box ASR at {eps_label(plan.des_eps)}):\n")
    parts.append(reporting.markdown_table(
        ["setting", "test accuracy", "accuracy drop (pt)", "FGSM", "PGD", "CW-PGD"],
        [[d, _fmt(acc, digits=2), "-" if acc is None or base_acc is None else f"{100 * (base_acc - acc):.2f}"] +
         [_fmt(_asr(rep, d, attack, "whitebox", eps=plan.des_eps)) for attack in ("fgsm", "hrs_pgd", "hrs_cw_pgd")]
         for names in families.values() for d in names
         for acc in [_get(rep.stored("accuracy", d), "accuracy", "mean")]] or [["-"] * 6]))
    parts.append("\nLinear fits of defense-rate gain on accuracy drop (Figure 2's lines):\n")
    parts.append(reporting.markdown_table(["attack", "defense", "slope", "intercept", "R^2"], fit_rows))
    for label, png in panels.items():
        parts.append(f"\n![DES {label}]({png})\n")
    largest = max(plan.hrs_shapes)
    sweeps = {"dropout": f"test dropout rate {', '.join(f'{r:g}' for r in plan.dropout_sweep)} on the base model",
              "gaussian": f"Gaussian (init, inner) sigmas {', '.join(str(s) for s in plan.gaussian_sweep)} "
                          f"({plan.sweep_epochs} epochs each)",
              "hrs": f"HRS k x k for k in {', '.join(str(k) for k in plan.hrs_sweep if k <= min(largest))}, the first k "
                     f"channels of each block of the HRS {largest[0]}x{largest[1]} model"}
    parts.append("\nStrength settings: " + "; ".join(sweeps[k] for k in DES_SWEEPS if k in plan.des_sweeps) +
                 ". Not run here: " + (", ".join(k for k in DES_SWEEPS if k not in plan.des_sweeps) or "none") + ".\n")

    # Ablation (Table A3).
    parts.append("## Number of switching blocks (Table A3)\n")
    rows = []
    planned = "ablation" in plan.experiments  # cells of an unplanned run are not this command's results
    for blocks, name in enumerate(ablation_names(plan), start=1):
        acc = _get(rep.stored("accuracy", name), "accuracy", "mean") if planned else None
        rows.append([f"{blocks} ({'x'.join([str(plan.ablation_channels)] * blocks)})", _fmt(acc, digits=2)] +
                    [_fmt(_asr(rep, name, "hrs_cw_pgd", "whitebox", eps=e) if planned else None) for e in plan.eps_grid])
    if all(row[1] == "-" for row in rows):
        parts.append(NOT_RUN.format(experiment="ablation"))
    parts.append(reporting.markdown_table(["blocks", "test accuracy"] + [f"CW-PGD {eps_label(e)}" for e in plan.eps_grid], rows))
    a3 = paper_values.HRS_TABLE_A3_ASR
    parts.append("\nPaper (CIFAR-10, eps 1/2/4/6/8 /255): " + "; ".join(
        f"{b} block{'s' if b > 1 else ''}: " + ", ".join(f"{100 * v:.1f}%" for v in a3[b].values()) for b in (1, 2, 3)) +
        f". Each model here: {plan.ablation_epochs} epochs per block" +
        (f"; the 2-block model is the {plan.ablation_shared_hrs()} model above" if plan.ablation_shared_hrs() else "") +
        ".\n")

    # Claims.
    parts.append("## The paper's claims, checked on these numbers\n")
    parts.extend(claims(rep))
    count, minutes = rep.read_minutes()
    parts.append(f"\n*The {count} result cells this report reads took {minutes:.0f} min to compute in all (each cell "
                 "stores its own time; models trained by the command are trained inside their accuracy cells).*")
    text = "\n".join(parts) + "\n"
    out = os.path.join(docs_dir, f"reproduce_hrs_{ds}.md")
    fileio.write_text(out, text)
    return text


def single_setting_des(rep, base_acc):
    """DES of each evaluated defense as it stands (one strength setting each) at the DES eps, white-box."""
    plan = rep.plan
    attacks = (("FGSM", "fgsm"), ("PGD", "hrs_pgd"), ("CW-PGD", "hrs_cw_pgd"))
    rows = []
    for d in plan.defenses:
        acc = _get(rep.stored("accuracy", d), "accuracy", "mean")
        row = [d, "-" if acc is None or base_acc is None else f"{100 * (base_acc - acc):.2f}"]
        for _, attack in attacks:
            asr, base_asr = (_asr(rep, d, attack, "whitebox", eps=plan.des_eps),
                             _asr(rep, "Base", attack, "whitebox", eps=plan.des_eps))
            row.append("-" if None in (acc, asr, base_acc, base_asr) else
                       f"{des.des(1 - asr, acc, 1 - base_asr, base_acc):.2f} ({100 * (base_asr - asr):+.1f} pt)")
        rows.append(row)
    return (f"\nDES of each evaluated defense as trained (one setting each, white-box at {eps_label(plan.des_eps)}; "
            "in brackets the defense-rate gain over Base):\n\n" +
            reporting.markdown_table(["defense", "accuracy drop (pt)"] + [f"DES {label}" for label, _ in attacks], rows)
            + "\n")


def claims(rep):
    """Plain statements computed from the stored cells (each says what it compares)."""
    plan = rep.plan
    lines = []
    base = _get(rep.stored("accuracy", "Base"), "accuracy", "mean")
    for d in plan.defenses:
        acc = _get(rep.stored("accuracy", d), "accuracy", "mean")
        if d.startswith("HRS") and acc is not None and base is not None:
            lines.append(f"- Accuracy: {d} {100 * acc:.2f}% vs base {100 * base:.2f}% ({100 * (acc - base):+.2f} pt; "
                         "paper: HRS costs at most ~0.2 pt on MNIST).")
    others = [d for d in plan.defenses if d.startswith(("SAP", "Dropout", "Gaussian", "Adv."))]
    for hrs_name in [d for d in plan.defenses if d.startswith("HRS")]:
        for label, attack in GRADIENT_ATTACKS.items():
            for setting in ("whitebox", "eot"):
                counts = []  # per baseline: at how many eps HRS has the strictly lower ASR
                for d in others:
                    pairs = [(_asr(rep, hrs_name, attack, setting, eps=e), _asr(rep, d, attack, setting, eps=e))
                             for e in plan.eps_grid]
                    pairs = [(h, o) for h, o in pairs if h is not None and o is not None]
                    if pairs:
                        counts.append(f"{d} {sum(h < o for h, o in pairs)}/{len(pairs)}")
                if counts:
                    lines.append(f"- {hrs_name}, {label} {setting}: eps values at which its ASR is lower than each "
                                 "baseline's: " + ", ".join(counts) + ".")
        for label, attack in GRADIENT_ATTACKS.items():
            pairs = [(_asr(rep, hrs_name, attack, "fixed", eps=e), _asr(rep, hrs_name, attack, "whitebox", eps=e))
                     for e in plan.eps_grid]
            pairs = [(f, w) for f, w in pairs if f is not None and w is not None]
            if pairs:
                weaker = sum(f < w for f, w in pairs)
                lines.append(f"- Fixed randomness vs white-box on {hrs_name}, {label}: fixed has the lower ASR at {weaker} of "
                             f"{len(pairs)} eps values (paper: fixed is weaker than white-box on HRS).")
    for sap in [d for d in plan.defenses if d.startswith("SAP")]:
        for label, attack in GRADIENT_ATTACKS.items():
            rows = [(_asr(rep, sap, attack, "whitebox", eps=e), _asr(rep, sap, attack, "eot", eps=e),
                     _asr(rep, "Base", attack, "whitebox", eps=e)) for e in plan.eps_grid]
            rows = [r for r in rows if None not in r]
            if rows:
                desc = ", ".join(f"{eps_label(e)}: {100 * w:.0f}% -> {100 * t:.0f}% (base {100 * b:.0f}%)"
                                 for e, (w, t, b) in zip(plan.eps_grid, rows))
                lines.append(f"- {sap}, {label} ASR white-box -> EOT: {desc}.")
    return lines or ["- (no results yet)"]
