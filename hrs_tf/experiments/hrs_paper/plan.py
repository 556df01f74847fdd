"""The scale of a reproduction of the HRS paper's evaluation on one data set (defaults: :func:`plan_for`).

Defenses are specs of the registry (:mod:`hrs_tf.defenses`): by default every defense's settings that it
declares for this paper (``compared_in["hrs_paper"]``: Base, SAP, SAP (HRS variant), Dropout 0.1 / 0.3,
Gaussian, adversarial training, HRS 5x5 and 10x10); any registered spec may be added. Models are named by
their spec's label; the DES strength sweeps come from each swept defense (``strength_sweep``).
"""

import dataclasses

from hrs_tf import checks
from hrs_tf.defenses import hrs as hrs_defense
from hrs_tf.defenses import registry
from hrs_tf.errors import ConfigError

EXPERIMENT = "hrs_paper"
EPS_GRIDS = {  # in units of 1/255
    "mnist": (8, 16, 32, 48, 64),        # ends at the 64/255 of the paper's MNIST Figure 5
    "fashion_mnist": (2, 4, 8, 16, 32),  # no paper numbers; Fashion-MNIST models break at smaller eps
    "cifar10": (1, 2, 4, 6, 8),          # Figure 4
}
DES_EPS = {"mnist": 64, "fashion_mnist": 16, "cifar10": 8}
FGSM_GRIDS = {"mnist": (16, 32, 64, 96, 128), "fashion_mnist": (4, 8, 16, 32, 64), "cifar10": (1, 2, 4, 8, 16)}
EXPERIMENTS = ("accuracy", "deviation", "attacks", "fgsm_cw", "des", "ablation")
# Plan values that change what a cell holds without being part of its key (a resume must keep them); besides them,
# every model name must keep its spec and epochs (a cell is keyed by the model's name only).
CONTENT_KEYS = ("dataset", "seed", "num_images", "eot_samples", "passes", "accuracy_repeats", "deviation_images",
                "deviation_samples")


@dataclasses.dataclass(frozen=True)
class Plan:
    """The scale of a reproduction run (defaults: :func:`plan_for`)."""

    dataset: str
    eps_grid: tuple
    des_eps: float
    fgsm_grid: tuple
    defenses: tuple = None  # spec texts; default: the registry's settings for this paper
    epochs: tuple = ()  # ((defense name, epochs), ...) overriding each defense's default_epochs
    num_images: int = 50
    cw_confidences: tuple = (0.0, 5.0, 10.0, 20.0)
    eot_samples: int = 10
    passes: int = 10
    accuracy_repeats: int = 5
    deviation_images: int = 10
    deviation_samples: int = 200
    sweep_epochs: int = 20  # epochs of the DES sweep members that are trained (e.g. Gaussian sigmas)
    ablation_epochs: int = 10
    ablation_channels: int = 5
    des_sweeps: tuple = None  # names of the defenses whose strength sweep the DES study runs (default: all of them)
    des_specs: tuple = None  # explicit DES sweep members (spec texts), instead of the defenses' own sweeps
    des_max_accuracy_drop: float = 0.01
    experiments: tuple = EXPERIMENTS
    seed: int = 0

    def specs(self):
        """The evaluated defenses as registry specs."""
        return [registry.parse(text) for text in self.defenses]

    def epochs_of(self, spec):
        """Training epochs of a main defense: the plan's override for its defense, else its default."""
        return dict(self.epochs).get(spec.name, spec.defense.default_epochs)

    def sweep_specs(self):
        """The DES study's strength settings, in the order of the swept defenses."""
        if self.des_specs is not None:
            return [registry.parse(text) for text in self.des_specs]
        main = self.specs()
        found = []
        for name in self.des_sweeps:
            found += registry.get(name).strength_sweep(self.dataset, main)
        return found

    def ablation_specs(self):
        """HRS with 1, 2 and 3 switching blocks of ``ablation_channels`` channels (Table A3)."""
        return hrs_defense.block_ablation(self.ablation_channels)


def plan_for(dataset_name, **overrides):
    """The default plan of a data set, with ``overrides`` (e.g. ``num_images=20``); ConfigError on a bad value."""
    if dataset_name not in EPS_GRIDS:
        raise ConfigError(f"no reproduction plan for data set {dataset_name!r}")
    plan = Plan(dataset=dataset_name, eps_grid=tuple(e / 255 for e in EPS_GRIDS[dataset_name]),
                des_eps=DES_EPS[dataset_name] / 255, fgsm_grid=tuple(e / 255 for e in FGSM_GRIDS[dataset_name]))
    try:
        plan = dataclasses.replace(plan, **overrides)
    except TypeError as e:
        raise ConfigError(f"bad reproduction setting: {e}") from None
    specs = [registry.parse(text) for text in plan.defenses] if plan.defenses else registry.compared_in(EXPERIMENT)
    if not specs:
        raise ConfigError("a reproduction needs at least one defense")
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"defenses {[s.text for s in specs]} repeat a model ({', '.join(labels)})")
    epochs = tuple((registry.get(name).name, checks.count(e, f"epochs of {name}", minimum=1)) for name, e in plan.epochs)
    plan = dataclasses.replace(plan, defenses=tuple(s.text for s in specs), epochs=epochs)
    if plan.des_sweeps is None:
        swept = [s.name for s in specs if s.defense.strength_sweep(dataset_name, specs)]
        plan = dataclasses.replace(plan, des_sweeps=tuple(dict.fromkeys(swept)))
    for name in plan.des_sweeps:
        registry.get(name)
    if plan.des_specs is not None:
        plan = dataclasses.replace(plan, des_specs=tuple(registry.parse(t).text for t in plan.des_specs))
    unknown = set(plan.experiments) - set(EXPERIMENTS)
    if unknown:
        raise ConfigError(f"unknown experiments {sorted(unknown)}; choose from {', '.join(EXPERIMENTS)}")
    for name in ("num_images", "eot_samples", "passes"):
        checks.count(getattr(plan, name), name, minimum=1)
    return plan
