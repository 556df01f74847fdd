"""``dropout[:TEST_RATE]``: defensive dropout (Wang et al., ICCAD 2018, section 3.2): a model trained with dropout
rate r after FC1 keeps dropout on at test time and under attack, with rate r' (default: r) and scaling
1 / (1 - r'), weights unchanged; the HRS paper's "Dropout 0.1 / 0.3 / 0.7" baselines (section 6.1)."""

import keras

from hrs_tf import checks
from hrs_tf.defenses.registry import WRAPPED, Argument, Defense, parse, register
from hrs_tf.errors import ConfigError, ModelError
from hrs_tf.layers.defensive_dropout import DefensiveDropout
from hrs_tf.models import surgery

STRENGTHS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # the test rates of the HRS paper's DES study


def dropout_after_fc1(model):
    """The (Defensive)Dropout layer right after FC1 of ``model``, or None."""
    layers = surgery.chain(model)
    i = surgery.layer_index(model, "fc1", "the first fully connected layer")
    following = layers[i + 1] if i + 1 < len(layers) else None
    return following if isinstance(following, (keras.layers.Dropout, DefensiveDropout)) else None


def with_defensive_dropout(model, test_rate=None, train_rate=None, seed=None, name=None):
    """``model`` (trained with dropout rate r after FC1) with that Dropout replaced by
    ``DefensiveDropout(r, test_rate)``: dropout on at test time with rate r' (default r) and scaling
    1 / (1 - r'). Weights copied, no retraining.

    A model trained without dropout has no such layer: pass ``train_rate=0`` to insert one after FC1.
    ``train_rate`` given for a model with a Dropout must equal its rate.
    """
    test_rate = None if test_rate is None else checks.rate(test_rate, "test_rate")
    train_rate = None if train_rate is None else checks.rate(train_rate, "train_rate")
    existing = dropout_after_fc1(model)
    if existing is None and train_rate is None:
        raise ModelError(f"model {model.name!r} has no Dropout layer after 'fc1' (its layers: "
                         f"{', '.join(layer.name for layer in surgery.chain(model))}); defensive dropout replaces the "
                         "train-time dropout of a model trained with dropout (pass train_rate=0 to add one)")
    if existing is not None and train_rate is not None and abs(existing.rate - train_rate) > 1e-9:
        raise ConfigError(f"train_rate={train_rate} differs from the rate {existing.rate} of {model.name!r}'s dropout layer")
    rate = existing.rate if existing is not None else train_rate
    layer = DefensiveDropout(rate, test_rate, seed=seed, name="dropout")
    name = name or f"{model.name}_defensive_dropout"
    if existing is None:
        return surgery.insert(model, layer, after="fc1", name=name)
    return surgery.replace(model, existing.name, layer, name=name)


@register
class DefensiveDropoutDefense(Defense):
    name = "dropout"
    title = "Dropout"
    summary = "dropout after FC1 kept on at test time and under attack (rate r'), no retraining"
    reference = "Wang et al. 2018 (defensive dropout) section 3.2; HRS section 6.1; REFERENCE section 2"
    make = WRAPPED
    arguments = (Argument("test_rate", lambda text: checks.rate(text, "test_rate"), None,
                          "test-time rate r' (default: the model's train rate r)", metavar="R"),)
    compared_in = {"hrs_paper": ("0.1", "0.3")}

    def label(self, args):
        return "Dropout" if args["test_rate"] is None else f"Dropout {args['test_rate']:g}"

    def apply(self, args, model, seed=None):
        return with_defensive_dropout(model, args["test_rate"], seed=seed)

    def strength_sweep(self, dataset_name, specs):
        return [parse(f"{self.name}:{rate:g}") for rate in STRENGTHS]
