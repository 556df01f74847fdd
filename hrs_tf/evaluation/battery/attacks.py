"""The battery's attacks, each declared once (:func:`entry`): how it runs against a :class:`~.target.Target` and
whether it applies to it. Every entry returns, per image, whether the defense still decides the true label after
the attack (``robust``), what it spent (gradient evaluations or queries per image) and a ``trace`` the
gradient-masking checks read (:mod:`.masking`).

White-box (gradients of the attack model, EOT over its randomness when it is stochastic, one draw per pass):
- ``pgd_ce`` / ``pgd_margin``: PGD (Madry et al. 2018) on the cross-entropy / the C&W margin, ``steps`` steps of
  2.5 eps / steps, ``restarts`` random starts (each on the images not yet broken); the trace records the images
  broken after each half of each restart (convergence);
- ``pgd_sigmoid``: PGD on the sigmoid cross-entropy (the hash paper's BPDA of a saturated softmax);
- ``apgd_ce`` / ``apgd_dlr``: Auto-PGD (Croce & Hein 2020);
- ``one_step``: a single step of size eps on the cross-entropy (FGSM / FGM), the "one step beats many" check;
Adaptive (Athalye et al. 2018; Tramer et al. 2020):
- ``eot``: PGD-CE with EOT over k draws for k along the plan's grid until the images broken stop rising;
- ``fixed``: PGD-CE crafted on the derandomized model (every stochastic layer off), judged on the deployed one;
- ``bpda``: PGD-CE through the identity / declared surrogate of every layer that declares one (spiking noise,
  bit depth, median smoothing ...), with EOT on a stochastic model;
Gradient-free: ``square`` (Andriushchenko et al. 2020, margin loss) and ``transfer`` (PGD-CE examples of the
undefended base model, crafted once per threat).

An adversarial image is projected onto the threat's ball and the pixel box before it is judged, so no attack is
credited with a perturbation beyond the radius.
"""

import dataclasses

import numpy as np

from hrs_tf.attacks import common, gradients, losses
from hrs_tf.attacks.apgd import apgd
from hrs_tf.attacks.bpda import bpda
from hrs_tf.attacks.pgd import initial_point, iterate
from hrs_tf.attacks.square import square, square_l2
from hrs_tf.errors import ConfigError
from hrs_tf.layers import stochastic

WHITE_BOX, ADAPTIVE, GRADIENT_FREE = "white-box", "adaptive", "gradient-free"
STEP_FRACTION = 2.5  # PGD step = 2.5 eps / steps (Madry et al. 2018)

ENTRIES = {}


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    title: str
    kind: str
    run: object  # ctx -> {"robust", "cost", "cost_kind", "trace"}
    applies: object  # target -> bool

    def __call__(self, ctx):
        return self.run(ctx)


def entry(name, title, kind, applies=lambda target: True):
    """Declares battery attack ``name`` (decorator of its ``run(ctx)``)."""
    def register(run):
        if name in ENTRIES:
            raise ConfigError(f"battery attack {name!r} is declared twice")
        ENTRIES[name] = Entry(name, title, kind, run, applies)
        return run

    return register


def applicable(target, names=None):
    """The entries (in declaration order) that apply to ``target`` (anything with its ``stochastic``, ``bpda_layers``
    and ``num_classes``), among ``names`` (default all)."""
    chosen = ENTRIES if names is None else {n: ENTRIES[n] for n in names}
    return [e for e in chosen.values() if e.applies(target)]


@dataclasses.dataclass
class Context:
    """One attack cell's inputs: the target, the images and labels, the threat, the plan and the cell's seed.
    ``transfer``: the transferred examples of this threat (``transfer`` entry) or None."""

    target: object
    x: np.ndarray
    y: np.ndarray
    threat: str
    norm: float
    eps: float
    plan: object
    seed: int
    transfer: np.ndarray = None
    _losses: dict = dataclasses.field(default_factory=dict)

    def loss(self, base):
        """The target's adapted loss for ``base``, one function object per base (compiled attacks are cached by it)."""
        if base not in self._losses:
            self._losses[base] = self.target.loss(base)
        return self._losses[base]

    def project(self, x_adv, x=None):
        x = self.x if x is None else x
        delta = common.project(np.asarray(x_adv, np.float32) - x, self.norm, self.eps)
        return np.clip(x + np.asarray(delta), 0.0, 1.0).astype(np.float32)

    def robust(self, x_adv, index=None):
        """Per image (of ``index``, default all): does the defense still decide the true label on ``x_adv``?"""
        index = np.arange(len(self.x)) if index is None else index
        return self.target.correct(self.project(x_adv, self.x[index]), self.y[index])


def _result(robust, cost, cost_kind="gradients", **trace):
    return {"robust": np.asarray(robust, bool), "cost": float(cost), "cost_kind": cost_kind, "trace": trace}


def pgd_restarts(ctx, base, restarts, eot=1, model=None, halves=True, random_start=True):
    """PGD on ``ctx.loss(base)`` with ``restarts`` random starts, each on the images still robust; per restart the
    images broken after its first half and after all ``steps`` (``halves``). Returns a result dict."""
    model = ctx.target.attack_model if model is None else model
    steps = ctx.plan.steps
    eps_iter = STEP_FRACTION * ctx.eps / steps
    objective = gradients.objective_from_loss(ctx.loss(base), False)
    robust = np.ones(len(ctx.x), bool)
    broken_after, spent = [], np.zeros(len(ctx.x))
    parts = [steps // 2, steps - steps // 2] if halves and steps > 1 else [steps]
    for r in range(restarts):
        todo = np.flatnonzero(robust)
        if len(todo) == 0:
            broken_after += [int((~robust).sum())] * len(parts)
            continue
        x, y = ctx.x[todo], ctx.y[todo]
        adv = initial_point(x, ctx.norm, ctx.eps, random_start, None, ctx.seed + 7919 * r)
        for part in parts:
            adv = iterate(model, objective, x, y, adv, ctx.eps, eps_iter, part, ctx.norm, eot)
            spent[todo] += part * eot
            robust[todo] &= ctx.robust(adv, todo)
            broken_after.append(int((~robust).sum()))
    return _result(robust, spent.mean(), broken_after=broken_after, parts=len(parts), restarts=restarts, eot=eot)


@entry("pgd_ce", "PGD-CE", WHITE_BOX)
def _pgd_ce(ctx):
    return pgd_restarts(ctx, losses.cross_entropy, ctx.plan.restarts)


@entry("pgd_margin", "PGD-margin", WHITE_BOX)
def _pgd_margin(ctx):
    return pgd_restarts(ctx, losses.margin, ctx.plan.restarts)


@entry("pgd_sigmoid", "PGD-sigmoid (BPDA softmax)", WHITE_BOX)
def _pgd_sigmoid(ctx):
    return pgd_restarts(ctx, losses.bpda_sigmoid, 1)


def _apgd(ctx, base):
    stats = {}
    adv = apgd(ctx.target.attack_model, ctx.x, ctx.y, eps=ctx.eps, nb_iter=ctx.plan.steps, norm=ctx.norm,
                           n_restarts=ctx.plan.restarts, loss_fn=ctx.loss(base), seed=ctx.seed, stats=stats)
    return _result(ctx.robust(adv), np.mean(stats["gradients"]))


@entry("apgd_ce", "APGD-CE", WHITE_BOX)
def _apgd_ce(ctx):
    return _apgd(ctx, losses.cross_entropy)


@entry("apgd_dlr", "APGD-DLR", WHITE_BOX, applies=lambda target: target.num_classes >= 3)
def _apgd_dlr(ctx):
    return _apgd(ctx, losses.dlr)


@entry("one_step", "one step (FGSM / FGM)", WHITE_BOX)
def _one_step(ctx):
    objective = gradients.objective_from_loss(ctx.loss(losses.cross_entropy), False)
    adv = iterate(ctx.target.attack_model, objective, ctx.x, ctx.y, ctx.x, ctx.eps, ctx.eps, 1, ctx.norm, 1)
    return _result(ctx.robust(adv), 1)


def _stochastic(target):
    return target.stochastic


@entry("eot", "EOT PGD-CE", ADAPTIVE, applies=_stochastic)
def _eot(ctx):
    """PGD-CE with EOT(k) along the grid; stops once k's images broken exceed the previous k's by fewer than the
    plan's tolerance (converged); the result is the worst case over the k tried."""
    robust, spent, tried, broken = np.ones(len(ctx.x), bool), 0.0, [], []
    converged = False
    for k in ctx.plan.eot_grid:
        out = pgd_restarts(ctx, losses.cross_entropy, 1, eot=k, halves=False)
        robust &= out["robust"]
        spent += out["cost"]
        tried.append(int(k))
        broken.append(int((~out["robust"]).sum()))
        if len(broken) > 1 and broken[-1] - broken[-2] < ctx.plan.counts(len(ctx.x)):
            converged = True
            break
    return _result(robust, spent, samples=tried, broken_per_samples=broken, converged=converged,
                   chosen_samples=tried[-1] if converged else None)


@entry("fixed", "fixed randomness (derandomized PGD-CE)", ADAPTIVE, applies=_stochastic)
def _fixed(ctx):
    with stochastic.fixed_realisation(ctx.target.attack_model, stochastic.OFF):
        return pgd_restarts(ctx, losses.cross_entropy, 1, halves=False)


@entry("bpda", "BPDA PGD-CE", ADAPTIVE, applies=lambda target: bool(target.bpda_layers))
def _bpda(ctx):
    eot = ctx.plan.bpda_eot if ctx.target.stochastic else 1
    with bpda(ctx.target.attack_model):
        out = pgd_restarts(ctx, losses.cross_entropy, 1, eot=eot, halves=False)
    out["trace"]["layers"] = ctx.target.bpda_layers
    return out


@entry("square", "Square", GRADIENT_FREE)
def _square(ctx):
    stats = {}
    attack = square if ctx.norm == np.inf else square_l2
    adv = attack(ctx.target.attack_model, ctx.x, ctx.y, eps=ctx.eps, max_queries=ctx.plan.square_queries,
                 loss_fn=ctx.loss(losses.margin), seed=ctx.seed, stats=stats)
    return _result(ctx.robust(adv), np.mean(stats["queries"]), "queries")


@entry("transfer", "transfer from the undefended model", GRADIENT_FREE)
def _transfer(ctx):
    if ctx.transfer is None:
        raise ConfigError("the transfer attack needs the base model's examples (--transfer_from)")
    return _result(ctx.robust(ctx.transfer), 0, "queries")


def craft_transfer(model, x, y, threat_norm, eps, plan, seed):
    """PGD-CE examples of the undefended ``model`` (``restarts`` starts, the last iterate of each kept where it fools
    ``model``): what the ``transfer`` entry judges on every defense."""
    steps = plan.steps
    objective = gradients.cross_entropy(False)
    best = x.copy()
    fooled = np.zeros(len(x), bool)
    for r in range(plan.restarts):
        start = initial_point(x, threat_norm, eps, True, None, seed + 7919 * r)
        adv = iterate(model, objective, x, y, start, eps, STEP_FRACTION * eps / steps, steps, threat_norm, 1)
        now = np.argmax(np.asarray(model(adv, training=False)), axis=-1) != y
        best[~fooled] = adv[~fooled]  # an image not yet fooled takes this restart's iterate; a fooled one keeps its own
        fooled |= now
    return best


def unbounded_success(ctx):
    """PGD-margin at an unbounded radius (``ctx.eps`` set so by the caller) from the clean image (no random start: at
    that radius a random start is noise that may break an image without any gradient): images broken among the
    clean-correct ones (the check of Carlini et al. 2019: an unbounded white-box attack must reach ~100%)."""
    return pgd_restarts(ctx, losses.margin, 1, halves=False, random_start=False)
