"""The Random Spiking paper's models (Table 6; REFERENCE sections 4 and 9) with the scheme options of Table 2.

- ``rs_mnist`` (MNIST, also usable on Fashion-MNIST): the C&W / MagNet MNIST model, Conv32-Conv32-Pool-Conv64-Conv64-
  Pool-FC200-FC200-FC10, ``same`` padding (the core architecture ``rs_mnist``); RS-1 = a :class:`RandomSpiking`
  layer right after the first conv + ReLU; the optional dropout 0.5 after FC1 is a ``DefensiveDropout`` kept on at
  test time (the paper's Dropout schemes are deployed with it: "MC Avg." rows of Table 2).
- ``wrn`` (Fashion-MNIST, CIFAR-10): WRN-depth-width (:mod:`randspike.wrn`, paper WRN-28-10; ``depth`` / ``width``
  make a CPU-sized one such as 16-4), RS-1 on the stem output, dropout 0.1 between the two convs of a block.
"""

import dataclasses

from hrs_tf import checks, models
from hrs_tf.errors import ConfigError
from hrs_tf.layers.defensive_dropout import DefensiveDropout
from hrs_tf.models import surgery
from randspike.layers.random_spiking import RandomSpiking, keep_probability

ARCHITECTURES = ("rs_mnist", "wrn")
DEFAULT_ARCHITECTURE = {"mnist": "rs_mnist", "fashion_mnist": "wrn", "cifar10": "wrn"}
DROPOUT_RATE = {"rs_mnist": 0.5, "wrn": 0.1}  # Table 7 "Dropout (Optional)"
KEEP_PROB = 0.8  # appendix A.1: "We choose p=0.8, so that 20% of all neuron outputs are randomly spiked"


@dataclasses.dataclass(frozen=True)
class ModelShape:
    """Which network a scheme trains: architecture, WRN depth / width, and the scheme's stochastic layers."""

    arch: str = "rs_mnist"
    depth: int = 28
    width: int = 10
    dropout: bool = False
    keep_prob: float = None  # None: no Random Spiking layer

    def describe(self):
        net = "RS MNIST CNN" if self.arch == "rs_mnist" else f"WRN-{self.depth}-{self.width}"
        extras = [f"RS-1 p={self.keep_prob:g}"] if self.keep_prob is not None else []
        extras += [f"dropout {DROPOUT_RATE[self.arch]:g}"] if self.dropout else []
        return net + (f" ({', '.join(extras)})" if extras else "")


def check_arch(arch):
    return checks.choice(arch, "architecture", ARCHITECTURES)


def build_rs_mnist(dropout=False, keep_prob=None, seed=None, input_shape=(28, 28, 1), name=None):
    """The RS MNIST model: Random Spiking after conv1 (if ``keep_prob``), DefensiveDropout(0.5) after fc1 (if
    ``dropout``). Fresh weights."""
    base = models.build_base_model("rs_mnist", dropout_rate=0.0)
    if tuple(input_shape) != tuple(base.input_shape[1:]):
        raise ConfigError(f"architecture rs_mnist takes inputs (28, 28, 1), the data set has {tuple(input_shape)}")
    seeds = (None, None) if seed is None else (int(seed) * 2 + 1, int(seed) * 2 + 2)

    def edit(layer):
        if layer.name == "conv1" and keep_prob is not None:
            return [layer, RandomSpiking(keep_probability(keep_prob), seed=seeds[0], name="spiking")]
        if layer.name == "fc1" and dropout:
            rate = DROPOUT_RATE["rs_mnist"]
            return [layer, DefensiveDropout(rate, rate, seed=seeds[1], name="dropout")]
        return [layer]

    return surgery.rebuild(base, edit, name or "rs_mnist")


def build_model(shape, input_shape, num_classes=10, seed=None, name=None):
    """A fresh model of ``shape`` (a :class:`ModelShape`) for images of ``input_shape``."""
    arch = check_arch(shape.arch)
    if arch == "rs_mnist":
        return build_rs_mnist(shape.dropout, shape.keep_prob, seed, input_shape, name)
    from randspike import wrn

    return wrn.build_wrn(tuple(input_shape), num_classes, depth=shape.depth, width=shape.width,
                         dropout_rate=DROPOUT_RATE["wrn"] if shape.dropout else 0.0,
                         spiking_keep_prob=shape.keep_prob, spiking_seed=None if seed is None else int(seed) * 2 + 1,
                         name=name)
