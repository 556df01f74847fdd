"""The nine schemes of the Random Spiking paper's Table 2 by their paper names, and loading a trained scheme as what
its decision needs: a Keras model (decision rules of :mod:`randspike.decision`) or a :class:`~randspike.decision.Decider`
(MagNet's rejection, region-based voting: a defense that has a ``decider(args, path)`` method)."""

from hrs_tf.defenses import registry
from hrs_tf.evaluation import deciders
from hrs_tf.errors import ConfigError
from randspike import decision

# Table 2's rows in the paper's order: (paper name, registered defense, the decision rule of the paper's row)
TABLE2 = (("Standard", "rs_standard", decision.SINGLE),
          ("Dropout", "rs_dropout", decision.MC_AVERAGE),
          ("Distillation", "distillation", decision.MC_AVERAGE),
          ("RS-1", "rs1", decision.MC_AVERAGE),
          ("RS-1-Dropout", "rsd1", decision.MC_AVERAGE),
          ("RS-1-Adv", "rs1_adv", decision.MC_AVERAGE),
          ("MagNet", "magnet", decision.MC_AVERAGE),
          ("Dropout-Adv", "dropout_adv", decision.MC_AVERAGE),
          ("RC", "region", decision.VOTING))
ALIASES = {"rsd-1": "rsd1", "rs-1-dropout": "rsd1", "region": "region", "region-based": "region", "rc": "region"}


def scheme_names():
    return [paper for paper, _, _ in TABLE2]


def spec_of(text):
    """The defense spec of a scheme given by its paper name (``RS-1``, ``Dropout-Adv``, ``MagNet`` ...,
    case-insensitive) or by a spec (``rs1:0.7``); ConfigError listing the schemes otherwise."""
    if isinstance(text, registry.Spec):
        return text
    key = str(text).strip()
    by_paper = {paper.lower(): name for paper, name, _ in TABLE2}
    name = by_paper.get(key.lower()) or ALIASES.get(key.lower())
    if name is not None:
        return registry.parse(name)
    if key.partition(":")[0].strip().lower() not in registry.names():
        raise ConfigError(f"unknown scheme {text!r}; choose one of {', '.join(scheme_names())} (or a defense spec)")
    return registry.parse(key)


def parse_list(items):
    """Specs from a list flag's items (absl splits at every comma): an item that is neither a paper name nor a
    registered defense continues the previous scheme's arguments, so ``RS-1,rs1_adv:per_confidence=50,cw_iterations=50,
    region:0.4,100`` is three schemes."""
    if isinstance(items, str):
        items = items.split(",")
    papers = {paper.lower() for paper in scheme_names()} | set(ALIASES)
    texts = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        head = item.partition(":")[0].strip().lower()
        if texts and head not in papers and head not in registry.names():
            texts[-1] += "," + item
        else:
            texts.append(item)
    return [spec_of(text) for text in texts]


def with_keywords(spec, keywords):
    """``spec`` with ``key=value`` arguments added (e.g. the adversarial schemes' example settings); ConfigError if
    the scheme has no such argument."""
    spec = registry.parse(spec)
    return registry.parse(spec.text + ("," if ":" in spec.text else ":") + ",".join(keywords))


def paper_name(spec):
    """The paper's name of the scheme of ``spec`` (its Table 2 row), or None."""
    spec = registry.parse(spec)
    return next((paper for paper, name, _ in TABLE2 if name == spec.name), None)


def paper_rule(spec):
    """The decision rule of the paper's Table 2 row of ``spec`` (MC average for a scheme not in the table)."""
    spec = registry.parse(spec)
    for _, name, rule in TABLE2:
        if name == spec.name:
            return rule
    return decision.MC_AVERAGE


def load(spec, path=None, model=None, dataset_name=None):
    """A scheme as its decision needs it (:func:`hrs_tf.evaluation.deciders.load`)."""
    return deciders.load(spec, path, model, dataset_name)


def rules_of(model):
    """The decision rules that apply to a loaded scheme: all three for a stochastic model, ``single`` for a
    deterministic one, the decider's own for a Decider."""
    from hrs_tf.layers import stochastic

    if isinstance(model, decision.Decider):
        return tuple(getattr(model, "rules", (decision.MC_AVERAGE,)))
    return decision.RULES if stochastic.is_stochastic(model) else (decision.SINGLE,)
