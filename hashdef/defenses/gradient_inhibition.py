"""``gi1`` / ``gi2`` / ``gi3[:EPS][,on=SPEC][,layers=N]``: gradient inhibition (Wang et al., IEEE TNNLS 2021,
section IV-B), a test-time transform of the weights of a trained model, no retraining:

- GI1, eq. (7): w + eps sign(w);
- GI2, eq. (8): (1 + eps) w;
- GI3, eq. (9): w + eps U(0, 1) sign(w), one uniform draw per weight, made once from the seed (the weights a
  deployed model ships; seed 0 unless given). ``gi3:EPS,redraw=true`` redraws U on every forward pass instead
  (:class:`hashdef.layers.inhibited_dense.InhibitedDense`): a *different*, stochastic defense, attacked with EOT.

Applied to the kernels of the last ``layers`` weight layers (default 3, the paper's "last three layers"; biases
untouched). On a hashed layer the transform applies to its K real weights: for GI1 / GI2 that equals transforming
the virtual matrix (sign(xi w) = xi sign(w)); for GI3 one draw serves every virtual weight of a bucket.

``eps`` defaults to the paper's setting for the model's input: MNIST-sized single-channel inputs GI1 0.1, GI2 3,
GI3 0.2; others (CIFAR-10) 0.3 / 5 / 0.6. ``on=SPEC`` applies GI to another defense's model, e.g.
``gi3:0.2,on=hash`` (the paper's combined solution); commas inside that spec are written ``;``
(``on=hash:1/4096;1/128``).
"""

import numpy as np

from hashdef.layers.hashed_dense import HashedDense
from hashdef.layers.inhibited_dense import InhibitedDense
from hrs_tf import checks
from hrs_tf.defenses.registry import TRANSFORM, UNDEFENDED, Argument, Defense, parse, register
from hrs_tf.errors import ConfigError, ModelError
from hrs_tf.models import surgery

PAPER_EPS = {1: (0.1, 0.3), 2: (3.0, 5.0), 3: (0.2, 0.6)}  # (MNIST, CIFAR-10), section V-B Table II
DEFAULT_LAYERS = 3


def default_eps(kind, input_shape):
    """The paper's eps for GI ``kind`` on a model taking ``input_shape`` (single channel: MNIST, else CIFAR-10)."""
    mnist, cifar = PAPER_EPS[kind]
    return mnist if int(input_shape[-1]) == 1 else cifar


def inhibit(weights, kind, eps, uniform=None):
    """GI ``kind`` (1, 2, 3) of an array of weights; GI3 needs ``uniform`` (same shape, U(0, 1))."""
    w = np.asarray(weights)
    if kind == 1:
        return w + eps * np.sign(w)
    if kind == 2:
        return (1.0 + eps) * w
    if kind == 3:
        if uniform is None or np.shape(uniform) != w.shape:
            raise ConfigError("GI3 needs one uniform draw per weight")
        return w + eps * np.asarray(uniform, w.dtype) * np.sign(w)
    raise ConfigError(f"gradient inhibition kind {kind!r} is not 1, 2 or 3")


def kernel_of(layer):
    """The weight variable GI transforms: a hashed layer's real weights, else the layer's kernel (None: no kernel)."""
    if isinstance(layer, HashedDense):
        return layer.hashed_kernel
    return getattr(layer, "kernel", None)


def weight_layers(model):
    """The layers of the plain chain ``model`` that have a kernel (conv, dense, hashed), in order."""
    return [layer for layer in surgery.chain(model) if kernel_of(layer) is not None]


def inhibited_layers(model, num_layers=DEFAULT_LAYERS):
    layers = weight_layers(model)
    if len(layers) < num_layers:
        raise ModelError(f"model {model.name!r} has {len(layers)} weight layer(s); gradient inhibition transforms the "
                         f"last {num_layers}")
    return layers[-num_layers:]


def with_gradient_inhibition(model, kind, eps=None, num_layers=DEFAULT_LAYERS, seed=0, name=None):
    """A copy of ``model`` with GI ``kind`` applied to the kernels of its last ``num_layers`` weight layers."""
    eps = default_eps(kind, model.input_shape) if eps is None else checks.nonnegative(eps, "eps")
    num_layers = checks.count(num_layers, "layers", minimum=1)
    inhibited_layers(model, num_layers)  # refuse before copying
    copy = surgery.rebuild(model, lambda layer: [layer], name or f"{model.name}_gi{kind}")
    rng = np.random.default_rng(0 if seed is None else checks.count(seed, "seed"))
    for layer in inhibited_layers(copy, num_layers):
        kernel = kernel_of(layer)
        w = np.asarray(kernel.numpy())
        kernel.assign(inhibit(w, kind, eps, rng.random(w.shape) if kind == 3 else None).astype(w.dtype))
    return copy


def with_redrawn_gi3(model, eps=None, num_layers=DEFAULT_LAYERS, seed=None, name=None):
    """``model`` with its last ``num_layers`` weight layers (Dense only) replaced by :class:`InhibitedDense`: GI3
    redrawn on every forward pass. Weights copied."""
    eps = default_eps(3, model.input_shape) if eps is None else checks.nonnegative(eps, "eps")
    layers = inhibited_layers(model, checks.count(num_layers, "layers", minimum=1))
    import keras

    for layer in layers:
        if type(layer) is not keras.layers.Dense:
            raise ModelError(f"GI3 redrawn per call replaces Dense layers; layer {layer.name!r} is a "
                             f"{type(layer).__name__} (use the once-drawn gi3 on it)")
    replacements = {}
    for k, layer in enumerate(layers):
        new = InhibitedDense(layer.units, eps, activation=keras.activations.serialize(layer.activation),
                             use_bias=layer.use_bias, seed=None if seed is None else int(seed) * 10 + k, name=layer.name)
        new.build((None, int(layer.kernel.shape[0])))
        new.set_weights(layer.get_weights())
        replacements[layer.name] = new
    return surgery.rebuild(model, lambda item: [replacements.get(item.name, item)], name or f"{model.name}_gi3_redrawn")


def parse_on(text):
    """The spec a GI is applied to, ``;`` standing for ``,`` inside it; returns its canonical text."""
    return parse(str(text).replace(";", ",")).text


def _bool(text):
    value = str(text).strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"redraw={text!r} must be true or false")
    return value in ("true", "1", "yes")


class GradientInhibition(Defense):
    """Base of the three registered GI defenses (``kind`` 1, 2, 3)."""

    kind = None
    make = TRANSFORM
    reference = "Wang et al. 2021 (hash + GI) section IV-B, eq. (7)-(9); REFERENCE section 5"

    @property
    def arguments(self):
        arguments = (
            Argument("eps", lambda text: checks.nonnegative(text, "eps"), None,
                     f"inhibition coefficient (default: the paper's {PAPER_EPS[self.kind][0]:g} for single-channel inputs, "
                     f"{PAPER_EPS[self.kind][1]:g} otherwise)"),
            Argument("on", parse_on, UNDEFENDED, "the defense whose model GI is applied to (';' for ',' inside it)",
                     keyword_only=True, format=lambda text: text.replace(",", ";"), metavar="SPEC"),
            Argument("layers", lambda text: checks.count(text, "layers", minimum=1), DEFAULT_LAYERS,
                     "how many of the last weight layers are transformed", keyword_only=True, metavar="N"),
        )
        if self.kind == 3:
            arguments += (Argument("redraw", _bool, False, "redraw U on every forward pass (a different, stochastic "
                                   "defense)", keyword_only=True, format=lambda v: str(v).lower(), metavar="true|false"),)
        return arguments

    def label(self, args):
        own = f"GI{self.kind}" + ("" if args["eps"] is None else f"({args['eps']:g})")
        if args.get("redraw"):
            own += " redrawn"
        if args["on"] == UNDEFENDED:
            return own
        return f"{parse(args['on']).label} + {own}"

    def source(self, args):
        return parse(args["on"])

    def apply(self, args, model, seed=None):
        if args.get("redraw"):
            return with_redrawn_gi3(model, args["eps"], args["layers"], seed=seed)
        return with_gradient_inhibition(model, self.kind, args["eps"], args["layers"], seed=seed)


@register
class GradientInhibition1(GradientInhibition):
    name, title, kind = "gi1", "GI1", 1
    summary = "test-time weight transform w + eps sign(w) on the last three weight layers (saturates the softmax)"


@register
class GradientInhibition2(GradientInhibition):
    name, title, kind = "gi2", "GI2", 2
    summary = "test-time weight transform (1 + eps) w on the last three weight layers (saturates the softmax)"


@register
class GradientInhibition3(GradientInhibition):
    name, title, kind = "gi3", "GI3", 3
    summary = "test-time weight transform w + eps U(0,1) sign(w), U drawn once per seed, on the last three weight layers"
