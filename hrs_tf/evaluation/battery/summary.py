"""Per defense and threat: the worst case over the battery's attacks per image, robust accuracy per attack, the
decisive attack, and the gradient-masking flags (Carlini et al. 2019, "On evaluating adversarial robustness",
section 5; Tramer et al. 2020, "On adaptive attacks to adversarial example defenses").

Flags (each with the numbers behind it; a difference counts when it reaches the plan's tolerance,
:meth:`~.plan.Plan.counts`: 2% of the images and at least 2 images by default):

- ``unbounded``: white-box PGD-margin at an unbounded radius breaks fewer than all but the tolerance of the
  images it could break (those the defense is correct on and that another test image with a different decision
  shows to be reachable: for a model that ignores its input nothing is reachable, so it is not flagged);
- ``gradient_free_beats_white_box``: Square or transfer breaks images that no gradient attack broke;
- ``one_step_beats_many``: one step of size eps breaks more images than 100-step PGD-CE;
- ``not_converged``: PGD's last half-run or last restart still broke new images, or EOT's success still rose at the
  largest sample count tried;
- ``hidden_randomness``: a model with no declared stochastic layer gave different outputs on the same images
  (EOT would change its result);
- ``standard_attack_overstates``: PGD on the cross-entropy alone leaves at least :data:`OVERSTATEMENT` of the images
  (10 points of robust accuracy, and at least the tolerance) robust that the battery breaks: a saturated softmax, a
  stop-gradient or a non-differentiable layer hides the gradient from the standard attack, and the robustness it
  measured was masking (a few points between PGD-CE and APGD are usual on any model, hence the larger bar).

``unbounded`` and ``hidden_randomness`` are properties of the defense, reported with its first threat.
"""

import numpy as np

from hrs_tf.evaluation.battery.attacks import ENTRIES, GRADIENT_FREE

OVERSTATEMENT = 0.10  # the fraction of the images by which PGD-CE alone must overstate the robustness to be flagged
FLAGS = ("unbounded", "gradient_free_beats_white_box", "one_step_beats_many", "not_converged", "hidden_randomness",
         "standard_attack_overstates")


def worst_case(clean_correct, robust_by_attack):
    """Per image: correct on the clean image and robust under every attack (the battery's robust accuracy)."""
    worst = np.asarray(clean_correct, bool).copy()
    for robust in robust_by_attack.values():
        worst &= np.asarray(robust, bool)
    return worst


def decisive(clean_correct, robust_by_attack):
    """The attack with the lowest robust accuracy (ties: the first in the battery's order), or None."""
    order = [name for name in ENTRIES if name in robust_by_attack]
    if not order:
        return None
    return min(order, key=lambda n: (int((np.asarray(clean_correct) & robust_by_attack[n]).sum()), order.index(n)))


def unique_breaks(clean_correct, robust_by_attack):
    """{attack: images only it broke} (among the clean-correct images)."""
    broken = {n: np.asarray(clean_correct) & ~np.asarray(r, bool) for n, r in robust_by_attack.items()}
    out = {}
    for name, mine in broken.items():
        others = np.zeros_like(mine)
        for other, theirs in broken.items():
            if other != name:
                others |= theirs
        out[name] = int((mine & ~others).sum())
    return out


def summarize(clean_correct, results):
    """The summary of one defense under one threat from its clean cell's ``correct`` and ``{attack: result}``."""
    clean_correct = np.asarray(clean_correct, bool)
    robust = {name: np.asarray(r["robust"], bool) for name, r in results.items()}
    worst = worst_case(clean_correct, robust)
    n = len(clean_correct)
    return {"images": n, "clean_accuracy": float(clean_correct.mean()), "robust_accuracy": float(worst.mean()),
            "per_attack": {name: float((clean_correct & r).mean()) for name, r in robust.items()},
            "decisive": decisive(clean_correct, robust), "unique_breaks": unique_breaks(clean_correct, robust),
            "cost": {name: {"per_image": r["cost"], "kind": r["cost_kind"]} for name, r in results.items()}}


def _broken(correct, results, names):
    """Per image: correct on the clean image and broken by at least one of the attacks ``names``."""
    broken = np.zeros_like(correct)
    for name in names:
        broken |= correct & ~np.asarray(results[name]["robust"], bool)
    return broken


def _flag(raised, text, **numbers):
    return {"raised": bool(raised), "text": text, **numbers}


def masking_flags(clean, unbounded, results, plan, first_threat=True):
    """The gradient-masking flags of one defense under one threat (module docstring); ``unbounded``: its unbounded
    cell (None: not computed); the defense's own checks only with ``first_threat``."""
    correct = np.asarray(clean["correct"], bool)
    need = plan.counts(len(correct))
    flags = {}
    if unbounded is not None and first_threat:
        reachable = correct & np.asarray(unbounded["reachable"], bool)
        broken = reachable & ~np.asarray(unbounded["robust"], bool)
        missed = int(reachable.sum() - broken.sum())
        rate = float(broken.sum() / reachable.sum()) if reachable.any() else None
        flags["unbounded"] = _flag(missed >= need, "white-box success at an unbounded radius",
                                   success=rate, reachable=int(reachable.sum()), missed=missed)
    gradient = [n for n in results if ENTRIES[n].kind != GRADIENT_FREE]
    free = [n for n in results if ENTRIES[n].kind == GRADIENT_FREE]
    if gradient and free:
        extra = int((_broken(correct, results, free) & ~_broken(correct, results, gradient)).sum())
        flags["gradient_free_beats_white_box"] = _flag(extra >= need, "images only a gradient-free attack broke",
                                                       images=extra)
    if "one_step" in results and "pgd_ce" in results:
        one = int(_broken(correct, results, ["one_step"]).sum())
        many = int(_broken(correct, results, ["pgd_ce"]).sum())
        flags["one_step_beats_many"] = _flag(one - many >= need, "one step vs PGD-CE, images broken",
                                             one_step=one, pgd_ce=many)
    late = {}
    for n in ("pgd_ce", "pgd_margin"):
        trace = results.get(n, {}).get("trace", {})
        after = trace.get("broken_after") or []
        if len(after) > 1:
            late[n] = int(after[-1] - after[-2])
    eot = results.get("eot", {}).get("trace", {})
    rising = bool(eot) and not eot.get("converged") and len(eot.get("samples", [])) > 1
    if late or eot:
        flags["not_converged"] = _flag(any(v >= need for v in late.values()) or rising,
                                       "new images broken by the last half-run / restart; EOT still rising",
                                       last_part=late, eot_samples=eot.get("samples"),
                                       eot_broken=eot.get("broken_per_samples"))
    if "pgd_ce" in results and len(results) > 1:
        robust = {n: np.asarray(r["robust"], bool) for n, r in results.items()}
        alone = int((correct & robust["pgd_ce"]).sum())
        worst = int(worst_case(correct, robust).sum())
        bar = max(need, int(round(OVERSTATEMENT * len(correct))))
        flags["standard_attack_overstates"] = _flag(alone - worst >= bar, "images robust to PGD-CE vs to the battery",
                                                    pgd_ce=alone, battery=worst)
    if "output_spread" in clean and first_threat:
        flags["hidden_randomness"] = _flag(not clean["stochastic"] and clean["output_spread"] > 1e-4,
                                           "largest change of a logit between two passes of a deterministic model",
                                           spread=clean["output_spread"])
    return flags
