"""``bits[:BITS]`` and ``median[:SIZE]``: feature squeezing (Xu, Evans & Qi, NDSS 2018) as input transforms
prepended to a trained model without retraining: the baselines of the hash paper's Table IV (1-bit depth on
MNIST, 4 bits on CIFAR-10; 2x2 median smoothing). Both squeezers declare a BPDA identity backward pass, which
:func:`hrs_tf.defenses.registry.attacker_view` reports to an adaptive attacker (Athalye et al. 2018)."""

from hashdef.layers.bit_depth import BitDepthReduction, check_bits
from hashdef.layers.median_smoothing import MedianSmoothing2D, check_size
from hrs_tf.defenses.registry import WRAPPED, Argument, Defense, register
from hrs_tf.errors import ModelError
from hrs_tf.models import surgery

BITS_BY_CHANNELS = {1: 1, 3: 4}  # hash paper Table IV: 1 bit for MNIST (grey), 4 bits for CIFAR-10 (colour)
BITS_LAYER, MEDIAN_LAYER = "squeeze_bits", "median_smoothing"


def default_bits(model):
    """The bit depth of the hash paper's Table IV for ``model``'s input: 1 for one channel, 4 for three."""
    channels = model.input_shape[-1]
    if channels not in BITS_BY_CHANNELS:
        raise ModelError(f"model {model.name!r} has input shape {model.input_shape[1:]}, not 1 or 3 channels; "
                         "give the bit depth explicitly (bits:N)")
    return BITS_BY_CHANNELS[channels]


def prepend(model, layer, name):
    """``model`` rebuilt with ``layer`` before its first layer (weights copied, no retraining)."""
    layers = surgery.chain(model)
    if not layers:
        raise ModelError(f"model {model.name!r} has no layers to prepend {layer.name!r} to")
    if layer.name in [item.name for item in layers]:
        raise ModelError(f"model {model.name!r} already has a layer named {layer.name!r}")
    return surgery.insert(model, layer, before=layers[0].name, name=name)


def with_bit_depth(model, bits=None, name=None):
    """``model`` with :class:`BitDepthReduction` (layer ``"squeeze_bits"``) in front; ``bits`` None: 1 bit for
    single-channel inputs, 4 bits for 3-channel ones (hash paper Table IV)."""
    bits = default_bits(model) if bits is None else check_bits(bits)
    layer = BitDepthReduction(bits, name=BITS_LAYER)
    return prepend(model, layer, name or f"{model.name}_bits{bits}")


def with_median_smoothing(model, size=2, name=None):
    """``model`` with :class:`MedianSmoothing2D` (layer ``"median_smoothing"``, ``size`` x ``size``) in front."""
    size = check_size(size)
    if len(model.input_shape) != 4:
        raise ModelError(f"model {model.name!r} has input shape {model.input_shape[1:]}; median smoothing needs "
                         "(height, width, channels) images")
    layer = MedianSmoothing2D(size, name=MEDIAN_LAYER)
    return prepend(model, layer, name or f"{model.name}_median{size}x{size}")


@register
class BitDepthDefense(Defense):
    name = "bits"
    title = "Bit depth"
    summary = "bit-depth reduction of the input (feature squeezing) in front of the trained model, no retraining"
    reference = "Xu, Evans & Qi 2018 (feature squeezing) section 4.1; hash paper Table IV; REFERENCE section 5"
    make = WRAPPED
    arguments = (Argument("bits", check_bits, None,
                          "bit depth 1..8 (default: 1 for 1-channel inputs, 4 for 3-channel, hash paper Table IV)"),)

    def label(self, args):
        return "Bit depth" if args["bits"] is None else f"Bit depth {args['bits']}"

    def apply(self, args, model, seed=None):
        return with_bit_depth(model, args["bits"])


@register
class MedianSmoothingDefense(Defense):
    name = "median"
    title = "Median smoothing"
    summary = "median smoothing of the input (feature squeezing) in front of the trained model, no retraining"
    reference = "Xu, Evans & Qi 2018 (feature squeezing) section 4.2; hash paper Table IV; REFERENCE section 5"
    make = WRAPPED
    arguments = (Argument("size", check_size, 2, "window width = height in pixels (Xu et al.: 2)"),)

    def label(self, args):
        return f"Median {args['size']}x{args['size']}"

    def apply(self, args, model, seed=None):
        return with_median_smoothing(model, args["size"])
