"""Reproduction of the hash paper's evaluation on one data set (Wang et al., IEEE TNNLS 2021, section V), resumable.

Models (made on demand through the defense registry, :class:`hrs_tf.experiments.model_store.ModelStore`): the
original seven-layer model (``none`` on architecture ``hash_mnist``), the defensive hash classifier (``hash``,
3 retraining epochs), GI1-3 on the original and on the hash model, the input-transform baselines (bit depth,
2x2 median smoothing), magnitude pruning and 8- / 3-bit quantisation, and (optionally) PGD adversarial training.

Tables and figures, every number one JSON cell (:class:`hrs_tf.experiments.cells.CellStore`):

- ``table1``  clean test accuracy of every model;
- ``table2``  DeepFool robustness rho; ASR of FGSM, BIM, MIM (untargeted), JSMA-F, JSMA-Z, C&W, EAD (targeted, the
              first correctly classified images x 9 targets), BPDA (PGD on the sigmoid loss, untargeted);
- ``table3``  sub-FGSM and ZOO untargeted; sub-C&W and ZOO targeted;
- ``table4``  bit depth and median smoothing vs hash + GI3 under FGSM, JSMA-Z, C&W and BPDA (for the input
              transforms BPDA = PGD through their identity backward pass, Athalye et al. 2018);
- ``table7``  pruning and quantisation under FGSM, JSMA-Z, C&W;
- ``figure2`` histograms of |dL/dx|, |dF/dx|, |dZ/dx| for the original model and GI1-3;
- ``figures34`` FGSM ASR against eps, BIM ASR against its step alpha, for the original model, hash + GI1/GI2 and
              (when in the plan) PGD adversarial training;
- ``adaptive`` beyond the paper: margin-loss PGD, APGD-DLR and the gradient-free Square attack on every model, to
              see which protection survives an attacker that does not go through the saturated softmax.

Training a model is a cell of its own; every result cell waits for the training cells of the model it uses, so
:meth:`Reproduction.run` computes them on any executor (:mod:`hrs_tf.experiments.execution`: in this process, or on
Ray).
"""

import dataclasses
import os

import numpy as np

from hashdef import robustness
from hrs_tf import checks
from hrs_tf import data as data_module
from hrs_tf.attacks import losses
from hrs_tf.attacks.bpda import through_bpda
from hrs_tf.evaluation import metrics, protocol
from hrs_tf.experiments.cells import CellStore, plan_with
from hrs_tf.experiments.executable import CellExperiment, CellList
from hrs_tf.experiments.execution import Recipe, execute
from hrs_tf.experiments.model_store import ModelStore

ADAPTIVE = ("PGD margin", "APGD-DLR", "Square")  # the attacks that do not go through the softmax
EXPERIMENTS = ("table1", "table2", "table3", "table4", "table7", "figure2", "figures34", "adaptive")
LINF_EPS = {"mnist": 0.3, "fashion_mnist": 0.1, "cifar10": 8 / 255}  # the paper states none; the usual radii
ARCHITECTURE = {"mnist": "hash_mnist", "fashion_mnist": "hash_mnist", "cifar10": "hash_cifar10"}
CONTENT_KEYS = ("dataset", "seed", "fast_images", "deepfool_images", "targeted_images", "bpda_images", "zoo_images",
                "zoo_targeted_images", "substitute_images", "cw_search_steps", "cw_iterations", "sub_cw_confidence",
                "zoo_queries", "square_queries", "eps", "histogram_images")


@dataclasses.dataclass(frozen=True)
class Plan:
    """The scale of a run (the paper's in brackets): images per attack, C&W / EAD effort, ZOO budget."""

    dataset: str
    eps: float
    base_epochs: int = 8
    hash_epochs: int = 3
    adv_epochs: int = 0  # > 0 adds PGD adversarial training (Figures 3-4)
    adv_steps: int = None  # its PGD steps per batch (default the adv defense's: Madry's 40)
    adv_warmup: int = 0  # its eps warm-up epochs (0: eps from the first batch, as Madry et al.)
    fast_images: int = 1000  # FGSM / BIM / MIM [whole test set]
    deepfool_images: int = 1000
    targeted_images: int = 10  # first test images (correct ones kept) x 9 targets: JSMA, C&W, EAD [100]
    bpda_images: int = 1000  # [1000]
    substitute_images: int = 1000
    zoo_images: int = 10  # [1000]
    zoo_targeted_images: int = 2  # x 9 targets [100]
    zoo_queries: int = 20000
    cw_search_steps: int = 9
    cw_iterations: int = 1000
    sub_cw_confidence: float = 20.0
    square_queries: int = 5000
    histogram_images: int = 1000  # [10000]
    figure_images: int = 500
    fgsm_grid: tuple = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5)
    bim_alphas: tuple = (0.01, 0.02, 0.05, 0.1)
    gi_eps: tuple = None  # (GI1, GI2, GI3); default the paper's for the data set's inputs
    prune_sparsity: float = 0.5
    experiments: tuple = EXPERIMENTS
    seed: int = 0


def plan_for(dataset, **overrides):
    """The default plan of ``dataset`` with ``overrides`` (unknown keys refused)."""
    checks.choice(dataset, "dataset", tuple(LINF_EPS))
    overrides = dict(overrides)
    if overrides.get("experiments") is not None:
        overrides["experiments"] = tuple(checks.choice(item, "experiment", EXPERIMENTS)
                                         for item in overrides["experiments"])
    eps = overrides.pop("eps", None)
    return plan_with(Plan, overrides, dataset=dataset, eps=LINF_EPS[dataset] if eps is None else eps)


def cell_name(name, column, **overrides):
    """The key of an attack cell: the column, the settings that differ from the column's, and the model name."""
    return column + "".join(f"|{k}={v:.6g}" for k, v in sorted(overrides.items())) + f"|{name}"


class Reproduction(CellExperiment):
    """Runs a plan's experiments into ``work_dir`` and writes its report. ``existing``: {model name: path};
    ``experiments``: those :meth:`run` computes (default: the plan's)."""

    def __init__(self, dataset, plan, work_dir, existing=None, log=print, experiments=None):
        self.dataset, self.plan, self.work_dir, self.log = dataset, plan, work_dir, log
        self.existing = dict(existing or {})
        self.experiments = tuple(experiments or plan.experiments)
        self.models = ModelStore(dataset, work_dir, existing, seed=plan.seed, log=log,
                                 settings={"arch": ARCHITECTURE[dataset.name]})
        self.cells = CellStore(work_dir, log, seed=plan.seed, reseed=[self.models.reseed])
        eps = plan.gi_eps or (None, None, None)
        gi = lambda k, on="": f"gi{k}" + (f":{eps[k - 1]:g}" if eps[k - 1] is not None else "") + on  # noqa: E731
        self.original = self.models.add("Original", "none", plan.base_epochs)
        self.hash = self.models.add("Hash", "hash", plan.hash_epochs)
        self.gi = [self.models.add(f"GI{k}", gi(k)) for k in (1, 2, 3)]
        on = lambda k: gi(k) + ("," if eps[k - 1] is not None else ":") + "on=hash"  # noqa: E731
        self.hash_gi = [self.models.add(f"Hash + GI{k}", on(k)) for k in (1, 2, 3)]
        self.squeezers = [self.models.add("Bit depth", "bits"), self.models.add("Median 2x2", "median")]
        self.compressed = [self.models.add("Pruning", f"prune:{plan.prune_sparsity:g}"),
                           self.models.add("Quantization 8 bits", "quantize:8"),
                           self.models.add("Quantization 3 bits", "quantize:3")]
        adv_args = ([] if plan.adv_steps is None else [f"steps={plan.adv_steps}"]) + (
            [f"warmup={plan.adv_warmup}"] if plan.adv_warmup else [])
        adv = "adv" + (":" + ",".join(adv_args) if adv_args else "")
        self.adv = self.models.add("PGD adv. training", adv, plan.adv_epochs) if plan.adv_epochs else None
        self.models.check_run(work_dir, dataclasses.asdict(plan), CONTENT_KEYS, "a hash reproduction")

    @property
    def table2_models(self):
        return [self.original, self.hash] + self.gi + self.hash_gi

    @property
    def adaptive_models(self):
        """The rows of the adaptive table: Table II's models, the input transforms and adversarial training."""
        return self.table2_models + self.squeezers + ([self.adv] if self.adv else [])

    @property
    def figure_models(self):
        """The curves of Figures 3-4 (the paper's: original, hash + GI1, hash + GI2, PGD adversarial training)."""
        return [self.original, self.hash_gi[0], self.hash_gi[1]] + ([self.adv] if self.adv else [])

    # -- attack definitions ------------------------------------------------------------------------
    def attacks(self):
        """{column: (attack, protocol settings)}: every attack column of the paper's tables and our additions."""
        p, eps = self.plan, self.plan.eps
        untargeted = dict(targets="none", num_images=p.fast_images)
        targeted = dict(targets="all", only_correct=True, num_images=p.targeted_images)
        cw = dict(binary_search_steps=p.cw_search_steps, max_iterations=p.cw_iterations)
        return {
            "DeepFool": ("deepfool", dict(targets="none", num_images=p.deepfool_images)),
            "FGSM": ("fgsm", dict(untargeted, eps=eps)),
            "BIM": ("bim", dict(untargeted, eps=eps)),
            "MIM": ("mim", dict(untargeted, eps=eps)),
            "JSMA-F": ("jsma_f", targeted),
            "JSMA-Z": ("jsma_z", targeted),
            "C&W": ("cw_l2", dict(targeted, **cw)),
            "EAD": ("ead", dict(targeted, **cw)),
            "BPDA": ("pgd", dict(targets="none", num_images=p.bpda_images, eps=eps, loss_fn=losses.bpda_sigmoid)),
            "sub-FGSM": ("substitute_fgsm", dict(targets="none", num_images=p.substitute_images, eps=eps)),
            "ZOO": ("zoo", dict(targets="none", num_images=p.zoo_images, max_queries=p.zoo_queries)),
            "sub-C&W": ("substitute_cw_l2", dict(targeted, confidence=p.sub_cw_confidence)),
            "ZOO targeted": ("zoo", dict(targets="all", only_correct=True, num_images=p.zoo_targeted_images,
                                         max_queries=p.zoo_queries)),
            "PGD margin": ("pgd", dict(targets="none", num_images=p.bpda_images, eps=eps, nb_iter=100,
                                       loss_fn=losses.margin)),
            "APGD-DLR": ("apgd_dlr", dict(targets="none", num_images=p.bpda_images, eps=eps, nb_iter=100)),
            "Square": ("square", dict(targets="none", num_images=p.bpda_images, eps=eps, max_queries=p.square_queries)),
        }

    def attack(self, name, column, **overrides):
        """One (model, attack column) cell: the attack's protocol result (ASR, distortions, rho, queries)."""
        attack, kwargs = self.attacks()[column]
        kwargs = dict(kwargs, **overrides)
        key = cell_name(name, column, **overrides)
        squeezer = name in self.squeezers and column == "BPDA"

        def compute():
            model = self.models.get(name)
            settings = dict(kwargs)
            fn = protocol.attack_function(attack)[1]
            if squeezer:  # BPDA against an input transform: PGD through its identity backward pass (cross-entropy)
                fn = through_bpda(fn)
                settings.pop("loss_fn", None)
            result = protocol.evaluate_protocol(model, self.dataset, fn, passes=1, seed=self.plan.seed,
                                                progress=False, **settings)
            result["attack"] = attack + (" through BPDA identity" if squeezer else "")
            result["column"] = column
            return result

        return self.cells.cell("attacks", key, compute)

    def accuracy(self, name):
        def compute():
            model = self.models.get(name)
            return {"model": name, "accuracy": metrics.accuracy(model, self.dataset.x_test, self.dataset.y_test)}
        return self.cells.cell("accuracy", name, compute)

    def histograms(self, name):
        """Figure 2: fractions of |dL/dx|, |dF/dx|, |dZ/dx| (all input dimensions of the first test images) per bin."""
        def compute():
            x, y = data_module.first_test_images(self.dataset, self.plan.histogram_images)
            grads = robustness.gradient_magnitudes(self.models.get(name), x, y)
            return {"model": name, "images": int(len(x)), "edges": [float(e) for e in robustness.HISTOGRAM_EDGES],
                    **{key: robustness.histogram(values) for key, values in grads.items()},
                    "means": {key: float(np.mean(values)) for key, values in grads.items()}}
        return self.cells.cell("gradients", name, compute)

    def estimator(self, name):
        def compute():
            x, _ = data_module.first_test_images(self.dataset, self.plan.histogram_images)
            return {"model": name, **robustness.logit_statistics(self.models.get(name), x)}
        return self.cells.cell("estimator", name, compute)

    # -- experiments ----------------------------------------------------------------------------------
    def results(self):
        """(kind, name, method, args, kwargs, model) of every result cell of the experiments, in local order."""
        experiments, p, out = self.experiments, self.plan, []

        def accuracy(name):
            out.append(("accuracy", name, "accuracy", (name,), {}, name))

        def attack(name, column, **overrides):
            out.append(("attacks", cell_name(name, column, **overrides), "attack", (name, column), overrides, name))

        if "table1" in experiments:
            for name in self.table2_models:
                accuracy(name)
                out.append(("estimator", name, "estimator", (name,), {}, name))
        if "figure2" in experiments:
            for name in [self.original] + self.gi:
                out.append(("gradients", name, "histograms", (name,), {}, name))
        if "table2" in experiments:
            for column in ("DeepFool", "FGSM", "BIM", "MIM", "BPDA", "JSMA-F", "JSMA-Z", "C&W", "EAD"):
                for name in self.table2_models:
                    attack(name, column)
        if "table4" in experiments:
            for name in self.squeezers:
                accuracy(name)
                for column in ("FGSM", "JSMA-Z", "C&W", "BPDA"):
                    attack(name, column)
        if "table7" in experiments:
            for name in self.compressed:
                accuracy(name)
                for column in ("FGSM", "JSMA-Z", "C&W"):
                    attack(name, column)
        if "adaptive" in experiments:
            for column in ADAPTIVE:
                for name in self.adaptive_models:
                    attack(name, column)
        if "figures34" in experiments:
            for name in self.figure_models:
                accuracy(name)
                for eps in p.fgsm_grid:
                    attack(name, "FGSM", eps=eps, num_images=p.figure_images)
                for alpha in p.bim_alphas:
                    attack(name, "BIM", eps_iter=alpha, num_images=p.figure_images)
                for column in ADAPTIVE:  # the paper's comparison with adversarial training, by an adaptive attacker
                    attack(name, column)
        if "table3" in experiments:
            for column in ("sub-FGSM", "ZOO", "sub-C&W", "ZOO targeted"):
                for name in (self.original, self.hash, self.gi[2], self.hash_gi[2]):
                    attack(name, column)
        unique = {}
        for entry in out:  # a cell two experiments share is computed once
            unique.setdefault(entry[:2], entry)
        return list(unique.values())

    def recipe(self):
        """How a worker builds this reproduction (absolute paths: a worker may start elsewhere)."""
        return Recipe(Reproduction, dataset=self.dataset, plan=self.plan, work_dir=os.path.abspath(self.work_dir),
                      existing={k: os.path.abspath(v) for k, v in self.existing.items()},
                      experiments=self.experiments)

    def cell_plan(self):
        """The training cells of the models the experiments use, then their result cells (the order of
        :meth:`results`), each waiting for the training of its model."""
        self.models.refresh()
        results = self.results()
        todo = CellList(self.models)
        todo.add_models(list(dict.fromkeys(model for *_, model in results)))
        for kind, name, method, args, kwargs, model in results:
            todo.result(kind, name, method, *args, models=[model], **kwargs)
        return todo.cells

    def run(self, experiments=None, executor=None):
        """Computes every missing cell of ``experiments`` (default: the plan's) on ``executor`` (default: in this
        process), training the models they need first."""
        self.experiments = tuple(experiments or self.experiments)
        return execute(self, executor, self.log)

    def report(self, docs_dir, command):
        from hashdef.experiments.report import write_report

        return write_report(self, docs_dir, command)

