"""Region-based classification (Cao & Gong 2017, "Mitigating evasion attacks to deep neural networks via
region-based classification"; Random Spiking paper appendix A.1 "Region-based Classification (RC)"; REFERENCE
section 9).

For each input, ``copies`` (the paper's t) perturbed copies are made by adding independent uniform noise in
[-r, r] to every pixel and clipping to [0, 1]; the prediction is the majority vote of the classifier's argmax over
the copies, ties going to the smaller label. The RS paper uses the Dropout scheme model as the classifier, with
r = 0.4, t = 10,000 on MNIST and r = 0.02, t = 1,000 on Fashion-MNIST and CIFAR-10 (:data:`DEFAULTS`).

The attacker's differentiable model (:attr:`RegionClassifier.model`) is :class:`UniformInputNoise` followed by the
classifier: its gradient is a gradient at one noisy copy, so an adaptive attack averages it over draws (EOT).
"""

import contextlib

import numpy as np
import tensorflow as tf

import keras

from hrs_tf import checks
from hrs_tf.errors import ConfigError, ModelError
from hrs_tf.layers import stochastic
from randspike import decision
from randspike.layers.uniform_noise import UniformInputNoise, check_radius

# RS paper appendix A.1: r chosen "so that the test errors would be comparable", t as in Cao & Gong's paper.
DEFAULTS = {
    "mnist": {"radius": 0.4, "copies": 10_000},
    "fashion_mnist": {"radius": 0.02, "copies": 1_000},
    "cifar10": {"radius": 0.02, "copies": 1_000},
}
CHUNK = 500  # noisy copies per forward call (bounds memory: activations of CHUNK images at once)
NOISE_LAYER = "region_noise"


def dataset_defaults(dataset_name):
    """``{"radius": r, "copies": t}`` of the RS paper for ``dataset_name``; ConfigError for another data set."""
    if dataset_name not in DEFAULTS:
        raise ConfigError(f"region-based classification has no default radius / copies for data set {dataset_name!r} "
                          f"(known: {', '.join(DEFAULTS)}); give them explicitly, e.g. region:0.4,10000")
    return dict(DEFAULTS[dataset_name])


def check_copies(copies):
    """The number of noisy copies t, at least 1."""
    return checks.count(copies, "copies", minimum=1)


def majority(counts):
    """The label with the most votes in each row of ``counts`` (images, classes); ties go to the smaller label."""
    return np.argmax(np.asarray(counts), axis=-1).astype(np.int64)  # numpy's argmax returns the first maximum


# -- the attacker's model: noise, then the classifier -------------------------------------------------------
def with_input_noise(classifier, radius, seed=None, name=None):
    """The Keras model ``x -> classifier(clip(x + U[-radius, radius), 0, 1))`` (the classifier nested, shared not
    copied). ``radius=None`` leaves it to be chosen from the data set (:func:`resolve_radius`)."""
    inputs = keras.Input(shape=tuple(classifier.input_shape[1:]))
    noisy = UniformInputNoise(radius, seed=seed, name=NOISE_LAYER)(inputs)
    return keras.Model(inputs, classifier(noisy), name=name or f"{classifier.name}_region")


def noise_layer(model):
    """The :class:`UniformInputNoise` at the input of a region model; ModelError if there is none."""
    found = [layer for layer in model.layers if isinstance(layer, UniformInputNoise)]
    if len(found) != 1:
        raise ModelError(f"model {model.name!r} is not a region-based classification model (it has {len(found)} "
                         "UniformInputNoise layers at its top level, not 1)")
    return found[0]


def classifier_of(model):
    """The classifier nested in a region model made by :func:`with_input_noise`."""
    noise_layer(model)
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(nested) != 1:
        raise ModelError(f"model {model.name!r} is not a region-based classification model (no nested classifier)")
    return nested[0]


def resolve_radius(model, dataset_name):
    """Sets the radius of ``model``'s noise layer to ``dataset_name``'s default if it has none yet; returns the radius.
    A radius already set is kept (the spec gave it)."""
    layer = noise_layer(model)
    if layer.radius is None:
        layer.set_radius(dataset_defaults(dataset_name)["radius"])
    return layer.radius


# -- the decision -------------------------------------------------------------------------------------------
class RegionClassifier(decision.Decider):
    """Region-based classification of ``classifier`` (a Keras model with logits output): the majority vote of its
    argmax over ``copies`` copies of the input with U[-radius, radius) noise per pixel, clipped to [0, 1].

    The classifier is deployed as it is: the RS paper's RC uses the Dropout scheme model, whose test-time dropout
    stays random, so each noisy copy also meets its own dropout mask. :meth:`labels` evaluates ``chunk`` noisy
    copies per forward call inside one ``tf.function`` (noise drawn there by the noise layer, votes counted in TF),
    so memory is bounded by ``chunk`` whatever ``copies``.

    :attr:`model` is ``UniformInputNoise(radius)`` then the classifier (sharing its layers): what an attacker
    differentiates, with EOT over the noise.
    """

    title = "RC"
    rules = (decision.VOTING,)  # the RS paper's Table 2 reports RC under "Voting" (the vote over the copies)

    def __init__(self, classifier, radius, copies, chunk=CHUNK, seed=None, log=None):
        if radius is None:
            raise ConfigError("region-based classification needs a radius (RS paper: 0.4 MNIST, 0.02 others)")
        self.radius = check_radius(radius)
        self.copies = check_copies(copies)
        self.chunk = checks.count(chunk, "chunk", minimum=1)
        self.classifier = classifier
        self.model = with_input_noise(classifier, self.radius, seed=seed)
        self.noise = noise_layer(self.model)
        self.num_classes = int(classifier.output_shape[-1])
        self.log = log  # e.g. print: a progress line per batch of images
        self._functions = {}

    def _count_function(self):
        """The traced vote counter, one per randomness-graph generation (see stochastic.trace_generation)."""
        key = stochastic.trace_generation()
        if key not in self._functions:
            spec = [tf.TensorSpec([None] + list(self.model.input_shape[1:]), tf.float32), tf.TensorSpec([], tf.int32)]
            self._functions = {key: tf.function(self._count, input_signature=spec)}
        return self._functions[key]

    def _count(self, x, copies):
        """Votes (images, classes) int32 of ``copies`` noisy copies of each image of ``x``: the (image, copy) pairs
        are taken ``chunk`` at a time (the last chunk padded and masked)."""
        n = tf.shape(x)[0]
        total = n * copies
        steps = (total + self.chunk - 1) // self.chunk
        offsets = tf.range(self.chunk)

        def body(step, counts):
            pair = step * self.chunk + offsets
            image = tf.minimum(pair // copies, n - 1)
            logits = self.model(tf.gather(x, image), training=False)
            votes = tf.one_hot(tf.argmax(logits, axis=-1, output_type=tf.int32), self.num_classes, dtype=tf.int32)
            votes *= tf.cast(pair < total, tf.int32)[:, None]
            return step + 1, counts + tf.math.unsorted_segment_sum(votes, image, n)

        _, counts = tf.while_loop(lambda step, _: step < steps, body,
                                  (tf.constant(0), tf.zeros([n, self.num_classes], tf.int32)))
        return counts

    def counts(self, x, rule=decision.MC_AVERAGE, batch_size=decision.BATCH_SIZE, per_image=False):
        """Votes per image and class (images, classes), int64, summing to ``copies`` per image. Images are processed
        ``batch_size`` at a time (a progress line each when ``log`` is set)."""
        rule = decision.check_rule(rule)
        batch_size = checks.count(batch_size, "batch_size", minimum=1)
        x = np.asarray(x, np.float32)
        expected = tuple(self.model.input_shape[1:])
        if x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != expected:
            raise ConfigError(f"images of shape {x.shape[1:]} do not fit the classifier's input {expected}")
        out = np.zeros((len(x), self.num_classes), np.int64)
        with _classifier_randomness(self.classifier, rule), _per_image(self.model, per_image):
            count = self._count_function()
            copies = tf.constant(self.copies, tf.int32)
            for a in range(0, len(x), batch_size):
                b = min(a + batch_size, len(x))
                out[a:b] = count(tf.constant(x[a:b]), copies).numpy()
                if self.log:
                    self.log(f"region-based classification: {b}/{len(x)} images, {self.copies} copies each")
        return out

    def labels(self, x, rule=decision.MC_AVERAGE, passes=decision.PASSES, batch_size=decision.BATCH_SIZE,
               per_image=False):
        """The majority vote over the noisy copies of each image (ties to the smaller label).

        The vote is RC's own rule whatever ``rule`` (the RS paper's Table 2 reports RC under "Voting"): ``mc`` and
        ``vote`` keep the classifier's test-time randomness (dropout) on, one draw per copy; ``single`` turns it off
        (the input noise stays: it is the defense). ``passes`` is not used (``copies`` plays its part).
        ``per_image``: layers of the classifier that share a draw across a batch draw per copy instead.
        """
        decision.check_rule(rule)
        return majority(self.counts(x, rule, batch_size, per_image))


def _classifier_randomness(classifier, rule):
    return stochastic.randomness(classifier, stochastic.OFF) if rule == decision.SINGLE else contextlib.nullcontext()


def _per_image(model, per_image):
    return stochastic.per_example(model) if per_image else contextlib.nullcontext()
