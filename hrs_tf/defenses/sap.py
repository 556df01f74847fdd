"""``sap[:exact|hrs]``: stochastic activation pruning between FC1 (+ its dropout) and FC2 of a trained model,
without retraining (HRS paper section 6.1; REFERENCE section 3): the exact form of the SAP author's code, or
the approximation the HRS authors used (``hrs``)."""

from hrs_tf import checks
from hrs_tf.defenses.registry import WRAPPED, Argument, Defense, register
from hrs_tf.errors import ModelError
from hrs_tf.layers.sap import VARIANTS, StochasticActivationPruning
from hrs_tf.models import surgery


def with_sap(model, variant="exact", seed=None, name=None):
    """``model`` with :class:`StochasticActivationPruning` between FC1 (+ its dropout) and FC2. Weights copied."""
    fc1 = surgery.layer_index(model, "fc1", "SAP goes after the first fully connected layer")
    fc2 = surgery.layer_index(model, "fc2", "SAP goes before the second fully connected layer")
    if fc2 < fc1:
        raise ModelError(f"model {model.name!r} has 'fc2' before 'fc1'")
    layer = StochasticActivationPruning(variant, seed=seed, name="sap")
    return surgery.insert(model, layer, before="fc2", name=name or f"{model.name}_sap_{variant}")


@register
class StochasticActivationPruningDefense(Defense):
    name = "sap"
    title = "SAP"
    summary = "stochastic activation pruning between FC1 and FC2, no retraining"
    reference = "Dhillon et al. 2018; HRS section 6.1; REFERENCE section 3"
    make = WRAPPED
    arguments = (Argument("variant", lambda text: checks.choice(text, "SAP variant", VARIANTS), "exact",
                          "exact (sampling with replacement) or hrs (the HRS authors' approximation)", metavar="exact|hrs"),)
    compared_in = {"hrs_paper": ("", "hrs")}

    def label(self, args):
        return "SAP" if args["variant"] == "exact" else f"SAP ({args['variant'].upper()} variant)"

    def apply(self, args, model, seed=None):
        return with_sap(model, args["variant"], seed=seed)
