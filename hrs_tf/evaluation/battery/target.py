"""A defense as the battery sees it: the model an attacker differentiates through, the loss adapter, the decision
that judges an image, and what the model's layers say about its randomness and masked gradients."""

import numpy as np

from hrs_tf.defenses import registry
from hrs_tf.evaluation import deciders, scoring
from hrs_tf.evaluation.protocol import check_model_fits
from hrs_tf.layers import stochastic
from hrs_tf.models import serialization

FROM_SOURCE = (registry.WRAPPED, registry.TRANSFORM)  # made here from the given (source) model, without training


class Target:
    """The defense of ``spec`` made from ``path``: for a wrapped or transform defense the trained model it is made
    from, for a trained or installed one its own saved output. ``rule`` / ``passes``: the decision of a stochastic
    Keras model (a decider's own rule for MagNet-like defenses)."""

    def __init__(self, label, spec, path, dataset, rule="mc", passes=deciders.PASSES, seed=0):
        self.label, self.spec, self.path = label, registry.parse(spec), path
        self.rule, self.passes = rule, passes
        if self.spec.make in FROM_SOURCE:
            source = serialization.load_model(path)
            check_model_fits(source, dataset)
            model = self.spec.apply(source, seed=seed, dataset_name=dataset.name)
            decided = deciders.load(self.spec, model=model, dataset_name=dataset.name)
        else:
            model = self.spec.load(path)
            decided = deciders.load(self.spec, path=path, model=model, dataset_name=dataset.name)
        self.decider = decided if isinstance(decided, deciders.Decider) else None
        self.model = model if self.decider is None else self.decider.model
        self.attack_model = self.model if self.decider is None else self.decider.attack_model()
        check_model_fits(self.model, dataset)
        self.num_classes = int(self.model.output_shape[-1])
        self.stochastic = stochastic.is_stochastic(self.attack_model)
        self.bpda_layers = sorted(layer.name for layer in stochastic.bpda_layers(self.attack_model))

    def loss(self, base):
        """The attack loss for :attr:`attack_model` from a ``base`` loss on class logits."""
        return base if self.decider is None else self.decider.loss_fn(False, base)

    def reseed(self, seed):
        """Restarts the seed generators of every model the target uses."""
        for model in {id(m): m for m in (self.model, self.attack_model)}.values():
            stochastic.reseed(model, seed)

    def labels(self, x, batch_size=deciders.BATCH_SIZE):
        """The defense's decision on ``x`` (int per image; :data:`deciders.REJECTED` for a rejection)."""
        x = np.asarray(x, np.float32)
        if self.decider is not None:
            return np.asarray(self.decider.labels(x, self.rule, self.passes, batch_size), np.int64)
        if not self.stochastic or self.rule == "single":  # one pass (a stochastic model: one draw)
            return scoring.predict(self.model, x, 1, batch_size)[0]
        return scoring.decide(scoring.predict_probabilities(self.model, x, self.passes, batch_size), self.rule)

    def correct(self, x, y):
        """Per image: does the defense decide the true label (a rejection is not correct)?"""
        return self.labels(x) == np.asarray(y)

    def describe(self):
        """JSON-ready facts of the target (reports)."""
        return {"label": self.label, "spec": self.spec.text, "path": str(self.path), "make": self.spec.make,
                "stochastic": self.stochastic, "bpda_layers": self.bpda_layers, "num_classes": self.num_classes,
                "decider": None if self.decider is None else type(self.decider).__name__,
                "rule": (self.rule if self.stochastic or self.decider is not None else "single"),
                "passes": self.passes}
