"""How much Table 4 depends on the attack budget (a check beyond the paper).

The reproduction pages run the protocol's C&W with a cheap budget (100 iterations x 4 search steps, Adam 0.1, c from
0.1) instead of the paper's (1000 x 9, Adam 0.01, c from 1e-3; section 5.4). :func:`compare` runs the single-model
attack of Table 4 (:func:`.examples.generate`: random targets, K, 8-bit rounding) at several budgets on the same
images and targets, and :func:`summarise` gives Table 4's figures (found, mean +- std L2 of the rounded examples)
and how many found examples still reach their target on the source itself after rounding.
"""

import numpy as np

from randspike import decision
from randspike.translucent import examples

PAPER = {"max_iterations": 1000, "binary_search_steps": 9, "learning_rate": 1e-2, "initial_const": 1e-3}
PAGES = {"max_iterations": 100, "binary_search_steps": 4, "learning_rate": 0.1, "initial_const": 0.1}
BUDGETS = {"pages": PAGES, "paper": PAPER}  # by the names tools/cw_budget.py takes


def summarise(model, made, targets, rule=decision.MC_AVERAGE):
    """Table 4's figures of ``generate``'s output ``made`` on its source ``model``, judged with ``rule`` (``single``
    for a deterministic model): examples, found, mean / std L2 over the found ones (the rounded images), and found
    examples whose rounded image the source labels as the target."""
    found = np.asarray(made["found"], bool)
    l2 = np.asarray(made["l2"], np.float64)[found]
    predicted = decision.labels(model, examples.as_float(made["adv"]), rule=decision.rule_or_error(rule, model))
    reached = decision.attack_succeeded(predicted, targets, targeted=True) & found
    return {"examples": int(len(found)), "found": int(found.sum()),
            "l2_mean": float(l2.mean()) if len(l2) else None, "l2_std": float(l2.std()) if len(l2) else None,
            "reach_target_after_rounding": int(reached.sum())}


def compare(model, x, labels, num_classes, budgets, confidence=0.0, seed=0, eot=1, progress=None):
    """``{budget name: summarise(...)}`` for the single-model C&W at each budget of ``budgets`` (name -> C&W
    settings of :func:`.examples.generate`) on the same images ``x`` and the same seeded random targets."""
    targets = examples.random_targets(labels, num_classes, seed)
    rows = {}
    for name, settings in budgets.items():
        rows[name] = dict(summarise(model, examples.generate([model], x, targets, confidence, eot=eot, **settings),
                                    targets), settings=dict(settings))
        if progress:
            progress(name, rows[name])
    return rows
