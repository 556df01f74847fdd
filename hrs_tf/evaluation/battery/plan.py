"""The battery's scale and threat models: images, radii, attack effort (defaults: the issue's, "where time allows")."""

import dataclasses

from hrs_tf import checks
from hrs_tf.errors import ConfigError

# The data sets' standard radii: L-inf (MNIST 0.3, Madry et al. 2018; Fashion-MNIST 0.1; CIFAR-10 8/255) and L2
# (MNIST 2.0, others 0.5; Croce & Hein 2020).
RADII = {"linf": {"mnist": 0.3, "fashion_mnist": 0.1, "cifar10": 8 / 255},
         "l2": {"mnist": 2.0, "fashion_mnist": 0.5, "cifar10": 0.5}}
THREATS = tuple(RADII)
NORMS = {"linf": float("inf"), "l2": 2}
UNBOUNDED_LINF = 1.0  # the radius of the gradient-masking check "unbounded": L-inf 1 reaches the whole pixel box


@dataclasses.dataclass(frozen=True)
class Plan:
    """The scale of a battery run. ``eot_grid``: the EOT sample counts tried in order until the success rate stops
    rising (by less than ``tolerance`` of the images); ``tolerance``: the smallest difference a gradient-masking
    check counts (a fraction of the images, and at least ``min_images`` images)."""

    dataset: str
    images: int = 500
    steps: int = 100
    restarts: int = 2
    square_queries: int = 5000
    eot_grid: tuple = (1, 4, 16, 64)
    bpda_eot: int = 8  # EOT samples of BPDA on a stochastic model
    passes: int = 10  # stochastic passes of the decision (MC average)
    rule: str = "mc"
    threats: tuple = THREATS
    tolerance: float = 0.02
    min_images: int = 2
    seed: int = 0
    linf: float = None  # a radius other than the data set's standard one (e.g. a paper's), else None
    l2: float = None

    def eps(self, threat):
        given = getattr(self, threat)
        return RADII[threat][self.dataset] if given is None else given

    def radius_overrides(self):
        """{threat: radius} of the radii set instead of the data set's standard ones."""
        return {t: getattr(self, t) for t in THREATS if getattr(self, t) is not None}

    def name(self):
        """The run's name in file names: the data set, then each radius set instead of the standard one
        (``mnist``, ``mnist_linf0.1``)."""
        return self.dataset + "".join(f"_{t}{r:g}" for t, r in self.radius_overrides().items())

    def counts(self, n_images):
        """The smallest number of images a check counts as a difference among ``n_images``."""
        return max(self.min_images, int(round(self.tolerance * n_images)))


def plan_for(dataset, **overrides):
    """The default plan of ``dataset`` with ``overrides`` (None values ignored); ConfigError on a bad setting."""
    checks.choice(dataset, "dataset", tuple(RADII["linf"]))
    given = {k: v for k, v in overrides.items() if v is not None}
    fields = {f.name for f in dataclasses.fields(Plan)}
    unknown = sorted(set(given) - fields)
    if unknown:
        raise ConfigError(f"unknown battery settings: {', '.join(unknown)}")
    for key in ("images", "steps", "restarts", "square_queries", "bpda_eot", "passes"):
        if key in given:
            given[key] = checks.count(given[key], key, minimum=1)
    if "eot_grid" in given:
        grid = tuple(checks.count(k, "eot_grid", minimum=1) for k in given["eot_grid"])
        if not grid or list(grid) != sorted(set(grid)):
            raise ConfigError(f"eot_grid={grid!r} must be increasing sample counts, e.g. 1,4,16")
        given["eot_grid"] = grid
    if "threats" in given:
        given["threats"] = tuple(checks.choice(t, "threat", THREATS) for t in given["threats"])
        if not given["threats"]:
            raise ConfigError("threats is empty; choose linf, l2 or both")
    for threat in THREATS:
        if threat in given:
            radius = checks.positive(given[threat], f"{threat} radius")
            if threat == "linf" and radius > UNBOUNDED_LINF:
                raise ConfigError(f"linf radius {radius:g} exceeds {UNBOUNDED_LINF:g}: pixels are in [0, 1]")
            given[threat] = None if radius == RADII[threat][dataset] else radius  # the standard radius: the default
    if "rule" in given:
        checks.choice(given["rule"], "decision rule", ("single", "mc", "vote"))
    if "tolerance" in given:
        tolerance = checks.number(given["tolerance"], "tolerance")
        if not 0.0 <= tolerance < 1.0:
            raise ConfigError(f"tolerance={tolerance!r} must be in [0, 1)")
    return Plan(dataset=dataset, **given)
