"""Reproduction of the HRS paper's evaluation on one data set (section 6; appendices C, D, F), resumable.

Defenses (section 6.1, :mod:`.plan`), all on the same base CNN: Base, SAP (exact, and the approximation the HRS
authors used), defensive dropout 0.1 / 0.3 (test-time dropout on the base model, no retraining), Gaussian
noise (random self-ensemble, trained with noise), Madry adversarial training, HRS 5x5 and 10x10; any other
registered defense may be added. Experiments:

- ``accuracy``   clean test accuracy, each image its own randomness (Table A2);
- ``deviation``  input-gradient deviation (Table 1 / Table A2 "Dev.") and gradient histograms (Figure 1);
- ``attacks``    ASR of PGD and CW-PGD (the paper's own Adam variants, ``hrs_pgd`` / ``hrs_cw_pgd``) against
                 eps under white-box, EOT(n) and fixed randomness (Figure 4, Figures A8 / A9);
- ``fgsm_cw``    FGSM against eps and C&W-L2 against kappa, white-box (Figures A6 / A7);
- ``des``        strength sweeps (each swept defense's own: test dropout rate, Gaussian sigmas, HRS channel
                 counts), their DES against FGSM / PGD / CW-PGD at one eps, mean DES and linear fits (Table 2,
                 Figure 2);
- ``ablation``   HRS with 1, 2 and 3 switching blocks of 5 channels under CW-PGD (Table A3).

Every attack is targeted at all 9 wrong classes of the first N test images; success is one fresh
stochastic pass predicting the target (``asr``), also reported as the majority of ``passes`` passes.
Models are made on demand through the defense registry (:class:`hrs_tf.experiments.model_store.ModelStore`);
every result is one JSON cell (:class:`hrs_tf.experiments.cells.CellStore`) written as soon as it is
computed, so a killed run continues where it stopped; :meth:`Reproduction.run` computes them on any executor
(:mod:`hrs_tf.experiments.execution`: in this process, or on Ray). A deterministic model (derived from its layers, not its
name) is attacked white-box only: EOT and fixed randomness change nothing on it.
"""

import dataclasses
import os

from hrs_tf import data as data_module
from hrs_tf.defenses import registry
from hrs_tf.defenses.hrs import HierarchicalRandomSwitching
from hrs_tf.evaluation import des, metrics, protocol
from hrs_tf.experiments.cells import CellStore
from hrs_tf.experiments.executable import CellExperiment, CellList
from hrs_tf.experiments.execution import Recipe, execute
from hrs_tf.experiments.hrs_paper.plan import CONTENT_KEYS
from hrs_tf.experiments.model_store import ModelStore

SETTINGS = protocol.PROTOCOL_SETTINGS  # whitebox, eot, fixed, derandomized
GRADIENT_ATTACKS = {"PGD": "hrs_pgd", "CW-PGD": "hrs_cw_pgd"}
DES_ATTACKS = (("FGSM", "fgsm"), ("PGD", "hrs_pgd"), ("CW-PGD", "hrs_cw_pgd"))
HISTOGRAM_PIXELS = 3  # input dimensions shown in the gradient histograms (Figure 1)


def cell_name(defense, attack, setting, **kwargs):
    """The key of an attack cell: attack, setting, strength and defense (model name)."""
    return f"{attack}|{setting}|" + "|".join(f"{k}={v:.6g}" for k, v in sorted(kwargs.items())) + f"|{defense}"


class Reproduction(CellExperiment):
    """Runs the experiments of a plan into ``work_dir`` (cells) and writes the report.

    ``existing``: {model name: path} of models trained elsewhere (a ``.h5`` file or an HRS run folder).
    """

    def __init__(self, dataset, plan, work_dir, existing=None, log=print, experiments=None):
        self.dataset, self.plan, self.work_dir, self.log = dataset, plan, work_dir, log
        self.existing = dict(existing or {})
        self.experiments = tuple(experiments or plan.experiments)
        self.models = ModelStore(dataset, work_dir, existing, seed=plan.seed, log=log)
        self.cells = CellStore(work_dir, log, seed=plan.seed, reseed=[self.models.reseed])
        self._base_pixels = None
        self.defenses = [self._declare(s, plan.epochs_of(s)) for s in plan.specs()]
        self.base = self._declare(registry.parse(registry.UNDEFENDED), plan.epochs_of(registry.parse(registry.UNDEFENDED)))
        self.sweep = [self._declare(s, plan.epochs_of(s) if s.text in plan.defenses else plan.sweep_epochs)
                      for s in plan.sweep_specs()] if "des" in plan.experiments else []
        self.ablation = [self._declare(s, plan.ablation_epochs, f"Ablation {len(s.args['channels'])} blocks")
                         for s in plan.ablation_specs()] if "ablation" in plan.experiments else []
        self.models.check_run(work_dir, dataclasses.asdict(plan), CONTENT_KEYS, "a reproduction")

    def _declare(self, spec, epochs, name=None):
        """The model name of ``spec``: an already declared model with the same spec and epochs (derived specs
        need none), else a new one named ``name`` (default: the spec's label)."""
        epochs = None if spec.source() is not None else epochs
        same = self.models.name_of(spec, epochs)
        return same or self.models.add(name or spec.label, spec, epochs)

    # -- cells --------------------------------------------------------------------------------------
    def stored(self, experiment, name):
        return self.cells.stored(experiment, name)

    def is_stochastic(self, name):
        """Whether model ``name`` is stochastic (made first if it was never made)."""
        known = self.models.is_stochastic(name)
        if known is None:
            self.models.get(name)
            known = self.models.is_stochastic(name)
        return known

    def setting_of(self, name, setting):
        """The setting a cell of model ``name`` is stored under: deterministic models only have white-box cells."""
        return setting if self.models.is_stochastic(name) is not False else "whitebox"

    def accuracy(self, name, repeats=None):
        def compute():
            model = self.models.get(name)
            result = metrics.clean_accuracy(model, self.dataset.x_test, self.dataset.y_test,
                                            repeats or self.plan.accuracy_repeats)
            return {"defense": name, "accuracy": result}
        return self.cells.cell("accuracy", name, compute)

    def attack(self, name, attack, setting, **kwargs):
        """One (model, attack, setting, strength) cell; deterministic models are attacked white-box only."""
        if not self.is_stochastic(name):
            setting = "whitebox"

        def compute():
            return protocol.first_n_all_targets(self.models.get(name), self.dataset, attack, self.plan.num_images,
                                                setting=setting, eot_samples=self.plan.eot_samples,
                                                passes=self.plan.passes, seed=self.plan.seed, progress=False, **kwargs)
        return self.cells.cell("attacks", cell_name(name, attack, setting, **kwargs), compute)

    def deviation(self, name):
        def compute():
            x, y = data_module.first_test_images(self.dataset, self.plan.deviation_images)
            value = des.gradient_deviation(self.models.get(name), x, (y + 1) % 10, self.plan.deviation_samples)
            return {"defense": name, "deviation": value, "images": int(len(x)), "samples": self.plan.deviation_samples}
        return self.cells.cell("deviation", name, compute)

    def gradient_histogram(self, name):
        """Figure 1: ``deviation_samples`` input gradients (CW-PGD margin, separate passes) of the first test
        image toward (label + 1) mod 10, at the pixels where the base model's gradient is largest (the same
        pixels for every defense)."""
        def compute():
            x, target = des.histogram_image(self.dataset)
            if self._base_pixels is None:  # the same pixels for every defense: computed once
                self._base_pixels = des.steepest_pixels(self.models.get(self.base), x, target, HISTOGRAM_PIXELS)
            pixels = self._base_pixels
            grads = des.gradients_at(self.models.get(name), x, target, pixels, self.plan.deviation_samples)
            return {"defense": name, "pixels": pixels, "image_shape": list(x.shape[1:]), "samples": grads.tolist()}
        return self.cells.cell("gradients", name, compute)

    # -- experiments ------------------------------------------------------------------------------
    def recipe(self):
        """How a worker builds this reproduction (absolute paths: a worker may start elsewhere)."""
        return Recipe(Reproduction, dataset=self.dataset, plan=self.plan, work_dir=os.path.abspath(self.work_dir),
                      existing={k: os.path.abspath(v) for k, v in self.existing.items()},
                      experiments=self.experiments)

    def cell_plan(self):
        """The training cells of every model, then, for each model whose training is done, its result cells in
        the order of the experiments (see the module docstring)."""
        self.models.refresh()
        experiments, plan = self.experiments, self.plan
        todo = CellList(self.models)
        todo.add_models(self.defenses + [self.base] + self.sweep + self.ablation)

        def accuracy(name, repeats=None):
            if todo.ready(name):
                todo.result("accuracy", name, "accuracy", name, repeats, models=[name])

        def attack(name, attack_name, setting, **kwargs):
            if todo.ready(name):
                setting = setting if self.is_stochastic(name) else "whitebox"
                todo.result("attacks", cell_name(name, attack_name, setting, **kwargs), "attack", name, attack_name,
                            setting, models=[name], group=f"{name}|{attack_name}|{setting}", **kwargs)

        if "accuracy" in experiments:
            for name in self.defenses:
                accuracy(name)
        if "deviation" in experiments:
            for name in self.defenses:
                if todo.ready(name):
                    todo.result("deviation", name, "deviation", name, models=[name])
                    if self.is_stochastic(name):
                        todo.result("gradients", name, "gradient_histogram", name, models=[name, self.base])
        if "attacks" in experiments:
            for attack_name in GRADIENT_ATTACKS.values():
                for setting in SETTINGS:
                    for eps in plan.eps_grid:
                        for name in self.defenses:
                            attack(name, attack_name, setting, eps=eps)
        if "fgsm_cw" in experiments:
            for name in self.defenses:
                for eps in plan.fgsm_grid:
                    attack(name, "fgsm", "whitebox", eps=eps)
                for kappa in plan.cw_confidences:
                    attack(name, "hrs_cw_l2", "whitebox", confidence=kappa)
        if "des" in experiments:
            for name in [self.base] + self.sweep:
                accuracy(name, repeats=2 if name != self.base else None)
                for _, attack_name in DES_ATTACKS:
                    attack(name, attack_name, "whitebox", eps=plan.des_eps)
        if "ablation" in experiments:
            for name in self.ablation:
                accuracy(name)
                for eps in plan.eps_grid:
                    attack(name, "hrs_cw_pgd", "whitebox", eps=eps)
        return todo.cells

    def run(self, experiments=None, executor=None):
        """Computes every missing cell of ``experiments`` (default: the plan's) on ``executor`` (default: in this
        process), training the models they need first."""
        self.experiments = tuple(experiments or self.experiments)
        return execute(self, executor, self.log)

    def planned_models(self):
        """Every model name the plan's experiments use (the undefended model always: wrapped defenses use it)."""
        return set(self.models.names())

    def trained_here(self):
        """What the command trains itself (models not given with ``existing``), with its epochs, as one line."""
        parts = []
        for name in self.models.names():
            spec, epochs = self.models.entries[name]
            if epochs is not None and name not in self.models.existing:
                per_block = " per block" if isinstance(spec.defense, HierarchicalRandomSwitching) else ""
                parts.append(f"{name} {epochs}{per_block}")
        return ", ".join(parts) or "none: every model was given"

    def sweep_families(self):
        """{defense title: [model names of its strength settings]} of the DES study, in sweep order."""
        families = {}
        for name in self.sweep:
            families.setdefault(self.models.entries[name][0].defense.title, []).append(name)
        return families

    def report(self, docs_dir, command, notes=None):
        """Writes ``docs_dir/reproduce_hrs_<dataset>.md`` and its plots from the stored cells (missing ones
        are shown as "-"); returns the markdown text."""
        from hrs_tf.experiments.hrs_paper.report import write_report

        return write_report(self, docs_dir, command, notes)

