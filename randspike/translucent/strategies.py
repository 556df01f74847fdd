"""The attack strategies of the translucent-box protocol (Random Spiking paper sections 3.2 and 5.4) as pure
functions on *fooled* matrices, and the L2 buckets of Figures 3-4.

A fleet of ``n`` models of one scheme (paper 16) is split by index (:class:`Roles`):

- **Single**: C&W against each of the first ``single_sources`` models (paper 4) alone; transfer measured on every
  other model of the fleet (paper "the remaining 12 target models") and averaged;
- **Multi-t**: C&W against the first ``t`` models at once (paper 8); transfer measured on the ``v = n - t`` held-out
  models (paper "the remaining 8");
- **Multi-t + passing m/(v-1) validation**: the Multi-t examples, each held-out model in turn the target and the
  other ``v - 1`` the validators (paper 7); an example is kept if it fools at least ``m`` of them (paper 5); the
  transfer rate to the target of the kept examples, averaged over the ``v`` rotations.

``fooled[j, i]`` says whether model ``j`` (a target / validation model, judged with its scheme's decision rule)
predicted example ``i``'s attack target; a rejection (MagNet) never fools. Rates are grouped by the L2 distance of
the (8-bit rounded) examples into buckets ``(edges[b], edges[b + 1]]``; a bucket with no example has no rate
(``None``).
"""

import dataclasses

import numpy as np

from hrs_tf import checks
from hrs_tf.errors import ConfigError
from hrs_tf.evaluation.deciders import REJECTED

SINGLE, MULTI, VALIDATED = "single", "multi", "validated"
STRATEGIES = (SINGLE, MULTI, VALIDATED)
# Table 3's L2 cut-off per data set; the default buckets split (0, cut-off] into four equal parts (the paper's
# Figure 4 has four L2 rows; their edges are not given).
L2_CUTOFF = {"mnist": 3.0, "fashion_mnist": 1.0, "cifar10": 1.0}
BUCKETS = 4


@dataclasses.dataclass(frozen=True)
class Roles:
    """Which fleet models play which part: ``models`` in the fleet, ``sources`` attacked at once by Multi-t (the
    first ones), ``single_sources`` attacked one by one by Single (the first ones), ``threshold`` validators of
    the ``models - sources - 1`` that an example must fool to pass."""

    models: int = 16
    sources: int = 8
    single_sources: int = 4
    threshold: int = 5

    def __post_init__(self):
        checks.count(self.models, "models", minimum=3)
        checks.count(self.sources, "sources", minimum=1)
        checks.count(self.single_sources, "single_sources", minimum=1)
        checks.count(self.threshold, "threshold", minimum=1)
        if self.sources > self.models - 2:
            raise ConfigError(f"{self.sources} source models leave fewer than 2 of {self.models} for target and "
                              "validation")
        if self.single_sources >= self.models:
            raise ConfigError(f"{self.single_sources} single-source models leave no target among {self.models}")
        if self.threshold > self.validators:
            raise ConfigError(f"a passing threshold of {self.threshold} exceeds the {self.validators} validation "
                              f"models ({self.models} models, {self.sources} sources)")

    @property
    def held_out(self):
        """The Multi-t target / validation models."""
        return tuple(range(self.sources, self.models))

    @property
    def validators(self):
        return self.models - self.sources - 1

    def single_targets(self, source):
        """The models a Single example made on ``source`` is measured on (every model but the Single sources)."""
        if not 0 <= source < self.single_sources:
            raise ConfigError(f"model {source} is not a Single source (0..{self.single_sources - 1})")
        return tuple(range(self.single_sources, self.models))

    def rotations(self):
        """``[(target, validators), ...]``: each held-out model once the target, the others its validators."""
        held = self.held_out
        return [(t, tuple(h for h in held if h != t)) for t in held]


def default_edges(dataset_name, buckets=BUCKETS):
    """``buckets`` equal L2 buckets up to the data set's Table 3 cut-off: the edges ``[0, c/b, ..., c]``."""
    checks.choice(dataset_name, "dataset", tuple(L2_CUTOFF))
    return tuple(float(v) for v in np.linspace(0.0, L2_CUTOFF[dataset_name], checks.count(buckets, "buckets") + 1))


def check_edges(edges):
    edges = tuple(float(e) for e in edges)
    if len(edges) < 2 or edges[0] < 0 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ConfigError(f"L2 bucket edges {list(edges)} must be at least two increasing values >= 0")
    return edges


def bucket_of(l2, edges):
    """Per example: the index of its bucket ``(edges[b], edges[b + 1]]`` (an L2 of exactly ``edges[0]`` falls in the
    first), or -1 outside every bucket."""
    edges = check_edges(edges)
    l2 = np.asarray(l2, np.float64)
    index = np.searchsorted(np.asarray(edges), l2, side="left") - 1
    index = np.where(l2 == edges[0], 0, index)
    return np.where((index < 0) | (index >= len(edges) - 1), -1, index)


def _rate(hits, mask):
    mask = np.asarray(mask, bool)
    return float(np.mean(np.asarray(hits, bool)[mask])) if mask.any() else None


def mean_of_defined(values):
    """Mean of the values that are not None (a bucket without a rate is left out); None if there is none."""
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def transfer_by_bucket(fooled, l2, edges):
    """Single / Multi-t: per bucket, the fraction of (target model, example) pairs where the target was fooled
    (every target sees every example, so this is the mean over targets of their rates). ``fooled``:
    (targets, examples)."""
    fooled = np.asarray(fooled, bool)
    buckets = bucket_of(l2, edges)
    return [_rate(fooled, np.broadcast_to(buckets == b, fooled.shape)) for b in range(len(edges) - 1)]


def passing(fooled_validators, threshold):
    """Per example: does it fool at least ``threshold`` of the validators (rows of ``fooled_validators``)?"""
    return np.asarray(fooled_validators, bool).sum(axis=0) >= threshold


def validated_by_bucket(fooled, l2, edges, threshold):
    """Multi-t + validation on the held-out models (rows of ``fooled``, in order): per rotation (each row once the
    target, the other rows its validators) and bucket, the passing rate (fraction of the bucket's examples that
    pass) and the transfer rate of the passing examples to the target.

    Returns ``{"passing": [...], "transfer": [...], "rotations": [{"passing": [...], "transfer": [...],
    "passed": [...]}, ...]}``: the per-bucket means over rotations (a rotation without a passing example in a
    bucket has no transfer rate there and is left out of that bucket's mean).
    """
    fooled = np.asarray(fooled, bool)
    buckets = bucket_of(l2, edges)
    rotations = []
    for r in range(fooled.shape[0]):
        passed = passing(np.delete(fooled, r, axis=0), threshold)
        rotations.append({
            "passing": [_rate(passed, buckets == b) for b in range(len(edges) - 1)],
            "transfer": [_rate(fooled[r], passed & (buckets == b)) for b in range(len(edges) - 1)],
            "passed": [int(np.sum(passed & (buckets == b))) for b in range(len(edges) - 1)]})
    return {"passing": [mean_of_defined([r["passing"][b] for r in rotations]) for b in range(len(edges) - 1)],
            "transfer": [mean_of_defined([r["transfer"][b] for r in rotations]) for b in range(len(edges) - 1)],
            "rotations": rotations}


def outcome_shares(labels, targets, rejected=REJECTED, l2=None, edges=None):
    """How the target models judged examples: ``labels`` (models, examples) their decisions, ``targets`` (examples)
    the attack targets. Returns ``{"judgements": n, "target": share, "rejected": share, "other": share}`` over the n
    (model, example) pairs (shares None when n = 0): the target class predicted, the example refused
    (``rejected``, MagNet's detectors), or some other class. With ``l2`` (examples) and ``edges``, also
    ``"by_bucket"``: the same shares over the examples of each L2 bucket."""
    labels = np.asarray(labels, np.int64)
    targets = np.asarray(targets, np.int64)
    n = int(labels.size)
    out = {"judgements": n, "target": None, "rejected": None, "other": None}
    if n:
        hit, refused = labels == targets, labels == rejected
        out.update(target=float(hit.mean()), rejected=float(refused.mean()), other=float((~hit & ~refused).mean()))
    if edges is not None:
        buckets = bucket_of(l2, edges)
        out["by_bucket"] = [outcome_shares(labels[:, buckets == b], targets[buckets == b], rejected)
                            for b in range(len(edges) - 1)]
    return out


def count_by_model(counts, models, fooled):
    """Adds to ``counts`` ({model: {"fooled": n, "judged": n}}, keys ``str(model)``) each model's row of ``fooled``
    (models, examples): how many examples reached their target on it, of how many judged. Returns ``counts``."""
    for k, row in zip(models, np.asarray(fooled, bool)):
        count = counts.setdefault(str(k), {"fooled": 0, "judged": 0})
        count["fooled"] += int(row.sum())
        count["judged"] += int(row.size)
    return counts


def counts_by_bucket(l2, edges):
    """Examples per bucket."""
    buckets = bucket_of(l2, edges)
    return [int(np.sum(buckets == b)) for b in range(len(edges) - 1)]


def mean_std(values):
    """(mean, std with ddof 1) of ``values`` (std 0 for one value; (None, None) for none)."""
    values = np.asarray(values, np.float64)
    if values.size == 0:
        return None, None
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0
