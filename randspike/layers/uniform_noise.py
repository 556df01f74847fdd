"""``UniformInputNoise``: independent uniform noise in [-r, r] on every input element, then clipping to the pixel
range -- the perturbed copies of region-based classification (Cao & Gong 2017; Random Spiking paper appendix A.1
"Region-based Classification"; REFERENCE section 9)."""

import keras
import tensorflow as tf

from hrs_tf import checks
from hrs_tf.errors import ConfigError, ModelError
from hrs_tf.layers.stochastic import OFF, StochasticLayer


def check_radius(radius):
    """The noise radius r as a float in [0, 1] (pixels are in [0, 1]; text such as ``"8/255"`` is accepted)."""
    return checks.fraction(radius, "radius")


@keras.saving.register_keras_serializable(package="randspike")
class UniformInputNoise(StochasticLayer):
    """``clip(x + u, clip_min, clip_max)`` with ``u ~ U[-radius, radius)`` drawn independently per element
    (Cao & Gong 2017 section 3; RS paper appendix A.1: "for each pixel, a noise was randomly chosen from (-r, r)").

    Random whatever the ``training`` flag; ``pinned``: one fixed draw; ``off``: identity (a valid image is not
    even clipped). ``radius=None`` is a layer whose radius is not chosen yet (the region defense's data-set
    default, see :mod:`randspike.defenses.region`): it can be built and saved, and calling it raises ModelError
    until :meth:`set_radius` is called; the saved config carries the radius once set.
    """

    def __init__(self, radius, clip_min=0.0, clip_max=1.0, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.radius = None if radius is None else check_radius(radius)
        self.clip_min = checks.number(clip_min, "clip_min")
        self.clip_max = checks.number(clip_max, "clip_max")
        if not self.clip_min < self.clip_max:
            raise ConfigError(f"clip_min={clip_min!r} must be below clip_max={clip_max!r}")

    def set_radius(self, radius):
        """Sets r (before the layer is first called: a traced function keeps the radius it was traced with)."""
        self.radius = check_radius(radius)

    def call(self, inputs, training=None):
        if self.radius is None:
            error = ModelError(f"layer {self.name!r} has no noise radius yet (region defense default: the data set's "
                               "radius); set it with set_radius or randspike.region.resolve_radius")
            error._keras_call_info_injected = True  # Keras then adds no argument listing: the message stays one line
            raise error
        noise = tf.random.stateless_uniform(tf.shape(inputs), seed=self.next_seed(), minval=-self.radius,
                                            maxval=self.radius, dtype=inputs.dtype)
        noisy = tf.clip_by_value(inputs + noise, self.clip_min, self.clip_max)
        return tf.where(self.mode_is(OFF), inputs, noisy)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(radius=self.radius, clip_min=self.clip_min, clip_max=self.clip_max)
        return config
