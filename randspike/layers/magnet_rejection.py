"""``MagNetRejection``: the rejection column of MagNet's attack model (:meth:`randspike.magnet.magnet.MagNet.attack_model`;
Carlini & Wagner 2017, "MagNet and 'Efficient defenses...' are not robust"; the Random Spiking repo's C&W on MagNet)."""

import keras
import tensorflow as tf

from hrs_tf import checks
from hrs_tf.errors import ConfigError
from randspike.magnet.detectors import (KINDS, PENALTY_WEIGHT, RECONSTRUCTION, REJECTION_MARGIN, jensen_shannon,
                                        reconstruction_error)


@keras.saving.register_keras_serializable(package="randspike")
class MagNetRejection(keras.layers.Layer):
    """Appends MagNet's *rejection logit* to the classifier's logits Z (C columns -> C + 1).

    Inputs ``[Z, a_1, b_1, ..., a_D, b_D]``: per detector, (image, its reconstruction) for a reconstruction
    detector and (classifier logits of the reconstructor's image, of the prober's) for a divergence detector.
    With the detector penalty ``P = sum_i max(0, score_i - threshold_i)`` (the hinge of the Random Spiking repo's
    C&W attack on MagNet, after Carlini & Wagner 2017, "MagNet and 'Efficient defenses...' are not robust") and
    Z_(1) >= Z_(2) the two largest logits, the rejection logit is::

        Z_(1) + REJECTION_MARGIN + w P   if P > 0 (a detector fires: MagNet rejects)
        Z_(2)                            if P = 0 (accepted)

    so the argmax of the C + 1 outputs is MagNet's decision (C = rejected), a margin test ``Z_t - max_{j != t}``
    fails on a rejected image, the margin of an accepted one is unchanged, and a C&W / margin objective on the
    C + 1 outputs gets the gradient of ``w P`` wherever a detector fires (zero below every threshold).
    """

    def __init__(self, kinds, parameters, thresholds, penalty_weight=PENALTY_WEIGHT, **kwargs):
        super().__init__(**kwargs)
        self.kinds = [checks.choice(k, "detector kind", KINDS) for k in kinds]
        self.parameters = [float(p) for p in parameters]
        self.thresholds = [float(t) for t in thresholds]
        if not len(self.kinds) == len(self.parameters) == len(self.thresholds) >= 1:
            raise ConfigError("MagNetRejection needs one kind, parameter and threshold per detector (at least one)")
        self.penalty_weight = checks.positive(penalty_weight, "penalty_weight")

    def penalty(self, inputs):
        """``P = sum_i max(0, score_i - threshold_i)`` per image."""
        total = 0.0
        for i, (kind, parameter, threshold) in enumerate(zip(self.kinds, self.parameters, self.thresholds)):
            a, b = inputs[1 + 2 * i], inputs[2 + 2 * i]
            if kind == RECONSTRUCTION:
                score = reconstruction_error(a, b, int(parameter) if parameter in (1.0, 2.0) else parameter)
            else:
                score = jensen_shannon(a, b, parameter)
            total = total + tf.nn.relu(score - threshold)
        return total

    def call(self, inputs):
        logits = inputs[0]
        penalty = self.penalty(inputs)
        top = tf.math.top_k(logits, k=2).values
        rejection = tf.where(penalty > 0.0, top[:, 0] + REJECTION_MARGIN, top[:, 1]) + self.penalty_weight * penalty
        return tf.concat([logits, rejection[:, None]], axis=-1)

    def compute_output_shape(self, input_shape):
        logits_shape = input_shape[0]
        classes = None if logits_shape[-1] is None else logits_shape[-1] + 1
        return (logits_shape[0], classes)

    def get_config(self):
        config = super().get_config()
        config.update(kinds=list(self.kinds), parameters=list(self.parameters), thresholds=list(self.thresholds),
                      penalty_weight=self.penalty_weight)
        return config
