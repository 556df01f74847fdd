"""``prune[:SPARSITY]`` and ``quantize[:BITS]``: magnitude pruning and k-means weight sharing of a trained model's
kernels (Han, Mao & Dally 2016, "Deep compression", sections 2-3), the compression baselines of the hash paper's
Table VII (pruning; 8- and 3-bit quantisation).

Deviation from Han et al.: they retrain after pruning (with the mask kept) and fine-tune the shared centroids
after quantising; these transforms do NOT retrain, they only transform the trained weights, so the clean
accuracy of the transformed model must be checked (the reproduction reports it beside the attack results).

Only kernels change (every weight variable named ``kernel`` or ``*_kernel``: Conv2D, Dense, ...), each one on
its own; biases and every other weight are copied unchanged, and the original model is left untouched.
"""

import numpy as np

from hrs_tf import checks
from hrs_tf.defenses.registry import TRANSFORM, Argument, Defense, register
from hrs_tf.errors import ConfigError, ModelError

MAX_QUANTIZE_BITS = 16
LLOYD_ITERATIONS = 300  # k-means stops after this many updates, or earlier when no weight changes cluster


def check_sparsity(value, name="sparsity"):
    """A pruned fraction in [0, 1); ConfigError otherwise."""
    return checks.rate(value, name)


def check_quantize_bits(value, name="bits"):
    """A number of bits per shared weight index: an integer in 1..16; ConfigError otherwise."""
    bits = checks.count(value, name, minimum=1)
    if bits > MAX_QUANTIZE_BITS:
        raise ConfigError(f"{name}={value!r} must be an integer in 1..{MAX_QUANTIZE_BITS}")
    return bits


# -- one kernel ------------------------------------------------------------------------------------------------
def pruned_count(size, sparsity):
    """How many of ``size`` entries are pruned: ``floor(sparsity * size + 0.5)`` (round half up)."""
    return int(np.floor(sparsity * size + 0.5))


def prune_kernel(values, sparsity):
    """``values`` with its :func:`pruned_count` smallest-magnitude entries set to 0, the rest unchanged.

    Ties in magnitude are broken by position: a stable sort of ``|values|`` in row-major (C) order, so of equal
    magnitudes the earlier entry is pruned first (entries already 0 are pruned first of all)."""
    values = np.asarray(values)
    flat = values.ravel().copy()
    order = np.argsort(np.abs(flat), kind="stable")
    flat[order[:pruned_count(flat.size, sparsity)]] = 0
    return flat.reshape(values.shape)


def kmeans_1d(values, clusters, iterations=LLOYD_ITERATIONS):
    """1-D k-means (Lloyd) of ``values`` into ``clusters`` centroids, initialised linearly between the minimum
    and the maximum (Han et al. 2016 section 3.2 found linear initialisation best).

    Returns ``(centroids, quantized)``: the centroids (ascending) and ``values`` with each entry replaced by its
    nearest centroid (ties go to the lower one). Vectorised: the values are sorted once, each assignment is
    ``clusters - 1`` binary searches of the midpoints between centroids and each update a cumulative sum, so
    an iteration costs O(clusters log n). A cluster left empty keeps its centroid (it then holds no value).
    """
    values = np.asarray(values)
    flat = values.ravel().astype(np.float64)
    order = np.argsort(flat, kind="stable")
    ascending = flat[order]
    running = np.concatenate([[0.0], np.cumsum(ascending)])

    def cuts(centroids):  # cluster j holds ascending[cut[j]:cut[j + 1]]
        midpoints = (centroids[1:] + centroids[:-1]) / 2
        return np.concatenate([[0], np.searchsorted(ascending, midpoints, side="right"), [flat.size]])

    centroids = np.linspace(ascending[0], ascending[-1], clusters)
    cut = cuts(centroids)
    for _ in range(iterations):
        counts = np.diff(cut)
        sums = running[cut[1:]] - running[cut[:-1]]
        centroids = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        new_cut = cuts(centroids)
        if np.array_equal(new_cut, cut):
            break
        cut = new_cut
    quantized = np.empty_like(flat)
    quantized[order] = np.repeat(centroids, np.diff(cut))
    return centroids, quantized.reshape(values.shape).astype(values.dtype)


def quantize_kernel(values, bits):
    """``values`` with each entry replaced by its nearest of ``2^bits`` shared values (:func:`kmeans_1d`);
    a kernel with at most ``2^bits`` distinct values is returned unchanged."""
    values = np.asarray(values)
    clusters = 2 ** bits
    if np.unique(values).size <= clusters:
        return values.copy()
    return kmeans_1d(values, clusters)[1]


# -- a whole model ---------------------------------------------------------------------------------------------
def is_kernel(variable):
    """Is this weight variable a kernel (named ``kernel`` or ``*_kernel``)?"""
    name = variable.name.split("/")[-1].split(":")[0]
    return name == "kernel" or name.endswith("_kernel")


def kernel_variables(model):
    """The kernel variables of ``model`` (at any depth), each once, in weight order."""
    found, seen = [], set()
    for variable in model.weights:
        if is_kernel(variable) and id(variable) not in seen:
            seen.add(id(variable))
            found.append(variable)
    return found


def clone_with_weights(model, name):
    """A new model of ``model``'s architecture called ``name``, with copies of its weights."""
    try:
        clone = model.__class__.from_config(dict(model.get_config(), name=name))
    except Exception as e:  # Keras raises many types for a model it cannot rebuild from its config
        raise ModelError(f"model {model.name!r} cannot be cloned from its config: {type(e).__name__}: "
                         f"{' '.join(str(e).split())[:200]}") from e
    if len(clone.weights) != len(model.weights):
        raise ModelError(f"model {model.name!r} cloned from its config has {len(clone.weights)} weights, "
                         f"not {len(model.weights)}")
    clone.set_weights(model.get_weights())
    return clone


def transform_kernels(model, transform, name):
    """A clone of ``model`` called ``name`` whose every kernel is ``transform(kernel values)``."""
    clone = clone_with_weights(model, name)
    kernels = kernel_variables(clone)
    if not kernels:
        raise ModelError(f"model {model.name!r} has no kernel weights to compress")
    for variable in kernels:
        values = np.asarray(variable.numpy())
        variable.assign(np.asarray(transform(values), dtype=values.dtype))
    return clone


def prune_weights(model, sparsity, name=None):
    """A copy of ``model`` with the ``sparsity`` fraction of smallest-magnitude entries of every kernel set to 0
    (:func:`prune_kernel`: ``floor(sparsity * n + 0.5)`` entries per kernel of n, ties by position); biases and
    the original model untouched. No retraining (Han et al. retrain; see the module docstring)."""
    sparsity = check_sparsity(sparsity)
    return transform_kernels(model, lambda values: prune_kernel(values, sparsity),
                             name or f"{model.name}_pruned_{sparsity * 100:g}pc")


def quantize_weights(model, bits, name=None):
    """A copy of ``model`` whose every kernel holds at most ``2^bits`` distinct values, each entry its nearest
    k-means centroid (:func:`quantize_kernel`, Han et al.'s weight sharing with linear initialisation); biases
    and the original model untouched. No fine-tuning of the centroids (Han et al. do; see the module docstring)."""
    bits = check_quantize_bits(bits)
    return transform_kernels(model, lambda values: quantize_kernel(values, bits),
                             name or f"{model.name}_quantized_{bits}bits")


@register
class PruningDefense(Defense):
    name = "prune"
    title = "Pruning"
    summary = "magnitude pruning of every kernel of the trained model, no retraining (Han et al. retrain)"
    reference = "Han, Mao & Dally 2016 (deep compression) section 2; hash paper Table VII; REFERENCE section 5"
    make = TRANSFORM
    arguments = (Argument("sparsity", check_sparsity, 0.5, "fraction of each kernel's entries set to 0, in [0, 1)"),)

    def label(self, args):
        return f"Pruning {args['sparsity'] * 100:g}%"

    def apply(self, args, model, seed=None):
        return prune_weights(model, args["sparsity"])


@register
class QuantizationDefense(Defense):
    name = "quantize"
    title = "Quantization"
    summary = ("k-means weight sharing (2^BITS values per kernel) of the trained model, no fine-tuning "
               "(Han et al. fine-tune)")
    reference = "Han, Mao & Dally 2016 (deep compression) section 3; hash paper Table VII; REFERENCE section 5"
    make = TRANSFORM
    arguments = (Argument("bits", check_quantize_bits, 8, "bits per shared-weight index, 1..16 (2^BITS values)"),)

    def label(self, args):
        return f"Quantization {args['bits']} bits"

    def apply(self, args, model, seed=None):
        return quantize_weights(model, args["bits"])
