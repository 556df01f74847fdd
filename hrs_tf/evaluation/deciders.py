"""Defenses whose decision is more than the argmax of one forward pass of a Keras model, seen the same way by every
evaluation (the Random Spiking paper's MagNet rejection and region-based voting, and any plug-in's).

A *decider* is an object with

- ``model``: the differentiable Keras model (logits output) an attacker targets by default;
- ``labels(x, rule, passes, batch_size, per_image)``: the defense's decision, an int label per image, or
  :data:`REJECTED` for an input a detector refused (a rejected clean image is an error, a rejected adversarial
  example is not a success);
- ``attack_model()`` / ``loss_fn(targeted, base)``: the model and loss an adaptive attacker should use (default:
  ``model`` and the base loss; MagNet appends its rejection logit and adds its detector hinge, Carlini & Wagner 2017,
  "MagNet and 'Efficient defenses...' are not robust").

A registered defense offers one through ``decider_for_model(args, model, dataset_name)`` (made from a defended Keras
model) or ``decider(args, path)`` (loaded from its saved output); :func:`load` picks it.
"""

from hrs_tf.defenses import registry
from hrs_tf.errors import ConfigError

REJECTED = -1  # the label of an input a detector rejected
PASSES = 10  # stochastic passes of the MC-average and voting rules (Random Spiking paper section 5.1)
BATCH_SIZE = 128  # images evaluated together (a batch-level layer's draw depends on its batch)


class Decider:
    """Base class of a decider (module docstring). Subclasses set :attr:`model` and implement :meth:`labels`."""

    model = None
    title = "decider"

    def labels(self, x, rule="mc", passes=PASSES, batch_size=BATCH_SIZE, per_image=False):
        raise NotImplementedError

    def attack_model(self):
        """The Keras model an adaptive attacker differentiates through (default :attr:`model`)."""
        return self.model

    def loss_fn(self, targeted, base):
        """The attack loss (``loss_fn(labels, logits)`` convention of :mod:`hrs_tf.attacks.losses`) for
        :meth:`attack_model`, from a ``base`` loss on class logits (default: ``base`` itself)."""
        return base


def load(spec, path=None, model=None, dataset_name=None):
    """A defense as its decision needs it: its :class:`Decider` if its defense has one (``decider_for_model`` on a
    made ``model``, else ``decider`` on the saved ``path``), else its Keras model (``model``, or loaded from
    ``path``)."""
    spec = registry.parse(spec)
    for_model = getattr(spec.defense, "decider_for_model", None)
    if for_model is not None and model is not None:
        return for_model(spec.args, model, dataset_name)
    from_path = getattr(spec.defense, "decider", None)
    if from_path is not None and path is not None:
        return from_path(spec.args, path)
    if model is None and path is None:
        raise ConfigError(f"defense {spec.text!r}: give its model or its path")
    return model if model is not None else spec.load(path)
