"""MagNet's detectors (Meng & Chen 2017, section 3.1; the published ``worker.py`` as the Random Spiking repo uses it;
REFERENCE section 9) and their thresholds.

- **Reconstruction error** (section 3.1.1, ``AEDetector``): score = ``mean(|x - AE(x)|^p)`` over the pixels of each
  image; p = 1 (L1) or 2 (L2, the mean squared error).
- **Divergence** (section 3.1.2, ``DBDetector``): score = Jensen-Shannon divergence (natural log) between the
  classifier's ``softmax(z / T)`` on two versions of the image, the *reconstructor*'s and the *prober*'s (each an
  autoencoder output clipped to [0, 1]); T = 10 and 40. Both published codes (MagNet's CIFAR setup and the Random
  Spiking repo) use the identity as reconstructor and an autoencoder as prober: ``JSD(P(x), P(AE(x)))``, the
  default here.

**Threshold** (``Operator.get_thrs``): with n validation scores and ``k = floor(n * drop_rate)``, the threshold is
the (k+1)-th largest score (``np.sort``, no interpolation), and an image is rejected when its score is *strictly
above* it; so exactly k validation images (a fraction ``drop_rate``, when n * drop_rate is whole) are rejected,
fewer only if scores tie at the threshold. The published code keeps the k-th largest and rejects at ``>=``: the
same k validation images. k = 0 (a rate below 1 / n) is refused.

The rejection column of MagNet's attack model is the layer :class:`randspike.layers.MagNetRejection`.
"""

import numpy as np
import tensorflow as tf

from hrs_tf import checks
from hrs_tf.errors import ConfigError

RECONSTRUCTION, DIVERGENCE = "reconstruction", "divergence"
KINDS = (RECONSTRUCTION, DIVERGENCE)
DROP_RATE = {"mnist": 0.001, "fashion_mnist": 0.004, "cifar10": 0.004}  # RS appendix A.1, Table 2 "Det. Thrs."
TEMPERATURES = (10.0, 40.0)  # the divergence detectors' T (MagNet section 5.3; RS appendix A.1)
SCORE_BATCH = 256
REJECTION_MARGIN = 1.0  # how far the rejection logit lies above the top logit of a rejected image
PENALTY_WEIGHT = 10.0  # the RS repo's C&W detector constant (const2 = initial_const 1e-3 x 1e4)


# -- scores (TF, differentiable) ----------------------------------------------------------------------------
def reconstruction_error(x, reconstructed, p):
    """Per image ``mean(|x - reconstructed|^p)`` over all pixels (MagNet ``AEDetector.mark``)."""
    diff = tf.abs(tf.convert_to_tensor(x) - reconstructed)
    powered = diff if p == 1 else tf.square(diff) if p == 2 else tf.pow(diff, float(p))
    return tf.reduce_mean(tf.reshape(powered, [tf.shape(powered)[0], -1]), axis=-1)


def jensen_shannon(logits_a, logits_b, temperature):
    """Per image Jensen-Shannon divergence (natural log, in [0, ln 2]) between ``softmax(logits_a / T)`` and
    ``softmax(logits_b / T)`` (MagNet ``JSD``: ``(KL(P || M) + KL(Q || M)) / 2`` with ``M = (P + Q) / 2``)."""
    p = tf.nn.softmax(tf.convert_to_tensor(logits_a) / temperature, axis=-1)
    q = tf.nn.softmax(tf.convert_to_tensor(logits_b) / temperature, axis=-1)
    m = 0.5 * (p + q)

    def kl(a, b):  # xlogy: 0 log 0 = 0 for classes a softmax underflows to zero
        return tf.reduce_sum(tf.math.xlogy(a, a) - tf.math.xlogy(a, b), axis=-1)

    return 0.5 * (kl(p, m) + kl(q, m))


def heal(autoencoder, x):
    """``clip(AE(x), 0, 1)`` (MagNet ``SimpleReformer.heal``); the identity for ``autoencoder=None``."""
    return x if autoencoder is None else tf.clip_by_value(autoencoder(x, training=False), 0.0, 1.0)


# -- thresholds ----------------------------------------------------------------------------------------------
def check_drop_rate(value, name="drop_rate"):
    """A false-positive rate in (0, 1)."""
    v = checks.number(value, name)
    if not 0.0 < v < 1.0:
        raise ConfigError(f"{name}={value!r} must be in (0, 1) (the fraction of clean validation images a detector "
                          "rejects, e.g. 0.001)")
    return v


def threshold_for(scores, drop_rate):
    """The score exceeded by a fraction ``drop_rate`` of ``scores`` (module docstring: the (k+1)-th largest,
    k = floor(n * drop_rate))."""
    drop_rate = check_drop_rate(drop_rate)
    scores = np.sort(np.asarray(scores, np.float64).reshape(-1))
    n = len(scores)
    k = int(np.floor(n * drop_rate + 1e-9))
    if not 1 <= k < n:
        raise ConfigError(f"drop_rate={drop_rate!r} rejects {k} of the {n} validation images; give at least "
                          f"{1 / n:.2g} (one image) and less than 1, or more validation images")
    if not np.all(np.isfinite(scores)):
        raise ConfigError("detector scores on the validation images are not all finite (a diverged autoencoder?)")
    return float(scores[n - k - 1])


# -- detectors ----------------------------------------------------------------------------------------------
class Detector:
    """A MagNet detector: :attr:`name`, batched :meth:`score` (numpy), :attr:`threshold` (None until set) and
    :meth:`rejects` (score strictly above the threshold)."""

    kind = None

    def __init__(self, name, threshold=None):
        self.name = str(name)
        self.threshold = None if threshold is None else float(threshold)

    def score_tensor(self, x):
        """The scores of a batch ``x`` (TF, differentiable)."""
        raise NotImplementedError

    def score(self, x, batch_size=SCORE_BATCH):
        """Scores of the images ``x`` (numpy float32), evaluated in consecutive batches of ``batch_size``."""
        x = np.asarray(x, np.float32)
        batch_size = checks.count(batch_size, "batch_size", minimum=1)
        out = np.empty(len(x), np.float32)
        for a in range(0, len(x), batch_size):
            out[a:a + batch_size] = np.asarray(self.score_tensor(tf.constant(x[a:a + batch_size])))
        return out

    def set_threshold(self, x_validation, drop_rate, batch_size=SCORE_BATCH):
        """Sets (and returns) the threshold that rejects a fraction ``drop_rate`` of ``x_validation``."""
        self.threshold = threshold_for(self.score(x_validation, batch_size), drop_rate)
        return self.threshold

    def rejects(self, x, batch_size=SCORE_BATCH):
        """Per image: is the score strictly above the threshold?"""
        if self.threshold is None:
            raise ConfigError(f"detector {self.name!r} has no threshold yet (set it on validation images first)")
        return self.score(x, batch_size) > self.threshold

    def describe(self):
        """The detector's settings and threshold (JSON-ready; models by name)."""
        raise NotImplementedError


class ReconstructionDetector(Detector):
    """Reconstruction-error detector: ``mean(|x - AE(x)|^p)`` per image (p = 1: L1, p = 2: L2)."""

    kind = RECONSTRUCTION

    def __init__(self, name, autoencoder, p, threshold=None):
        super().__init__(name, threshold)
        self.autoencoder = autoencoder
        self.p = checks.choice(int(p) if p in (1, 2) else p, f"p of detector {name!r}", (1, 2))

    def score_tensor(self, x):
        return reconstruction_error(x, self.autoencoder(x, training=False), self.p)

    def describe(self):
        return {"name": self.name, "kind": self.kind, "autoencoder": self.autoencoder.name, "p": self.p,
                "threshold": self.threshold}


class DivergenceDetector(Detector):
    """Divergence detector: JSD of the classifier's ``softmax(z / T)`` on ``heal(reconstructor, x)`` and on
    ``heal(prober, x)`` (reconstructor None: the image itself, as the published codes)."""

    kind = DIVERGENCE

    def __init__(self, name, classifier, prober, temperature, reconstructor=None, threshold=None):
        super().__init__(name, threshold)
        self.classifier, self.prober, self.reconstructor = classifier, prober, reconstructor
        self.temperature = checks.positive(temperature, f"temperature of detector {name!r}")

    def score_tensor(self, x):
        a = self.classifier(heal(self.reconstructor, x), training=False)
        b = self.classifier(heal(self.prober, x), training=False)
        return jensen_shannon(a, b, self.temperature)

    def describe(self):
        return {"name": self.name, "kind": self.kind, "prober": self.prober.name,
                "reconstructor": None if self.reconstructor is None else self.reconstructor.name,
                "temperature": self.temperature, "threshold": self.threshold}
