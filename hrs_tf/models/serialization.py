"""Saving and loading models: whole-model ``.h5`` files and Keras-2 weights-only HDF5 files.

- :func:`save_model` writes a whole model (architecture + weights, no optimizer state) atomically.
- :func:`load_model` reads it back with Keras safe mode on; every custom layer of the package is
  registered on ``import hrs_tf`` and those of plug-ins (:mod:`hrs_tf.plugins`) are loaded first, so no
  ``custom_objects`` are needed.
- :func:`load_legacy_weights` reads the weights-only HDF5 layout of Keras 2 (``model.save_weights`` in
  the published HRS / defensive-dropout repos, TF 1.x) into a model, matching layers by order.
- :func:`save_legacy_weights` writes that layout (used for per-channel HRS files and for tests).
"""

import logging
import os

import h5py
import numpy as np

from hrs_tf.errors import ModelError
from hrs_tf.fileio import atomic_path
from hrs_tf.quiet import LegacyH5Notice


def save_model(model, path):
    """Saves ``model`` to ``path`` (``.h5`` or ``.keras``) atomically, without optimizer state."""
    path = os.fspath(path)
    if not path.endswith((".h5", ".keras")):
        raise ModelError(f"model path {path!r} must end in .h5 or .keras")
    with atomic_path(path) as tmp:
        if path.endswith(".h5"):
            notice = LegacyH5Notice()  # the user asked for .h5: Keras's "legacy format" warning says nothing
            logging.getLogger("absl").addFilter(notice)
            try:
                model.save(tmp, include_optimizer=False)
            finally:
                logging.getLogger("absl").removeFilter(notice)
        else:
            model.save(tmp)


def load_model(path):
    """Loads a whole model saved by :func:`save_model` (or Keras) in safe mode, uncompiled."""
    import keras

    from hrs_tf import layers, plugins  # noqa: F401  (registers the project's and the plug-ins' layers)

    plugins.load()

    path = os.fspath(path)
    if os.path.isdir(path):
        raise ModelError(f"model file {path!r} is a directory; give the .h5 / .keras file inside it")
    if not os.path.isfile(path):
        raise ModelError(f"model file {path!r} does not exist")
    if path.endswith(".h5") and not h5py.is_hdf5(path):
        raise ModelError(f"model file {path!r} is not an HDF5 file (corrupt or truncated?)")
    if path.endswith(".h5"):
        try:
            with h5py.File(path, "r") as f:
                whole_model = "model_config" in f.attrs
        except OSError as e:
            raise ModelError(f"cannot open model file {path!r}: {' '.join(str(e).split())}") from e
        if not whole_model:
            raise ModelError(
                f"{path!r} holds weights only, not a whole model; build the architecture and use "
                "hrs_tf.serialization.load_legacy_weights(model, path)"
            )
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # Keras raises many types; the user needs the file name and the reason.
        reason = " ".join(str(e).split())[:300]
        raise ModelError(f"cannot load model {path!r}: {type(e).__name__}: {reason}") from e


def _leaf_layers_with_weights(model):
    """The model's innermost layers that own weights, in forward order (nested models flattened)."""
    leaves = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            leaves.extend(_leaf_layers_with_weights(layer))
        elif layer.weights:
            leaves.append(layer)
    return leaves


def _decode(value):
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _legacy_weight_groups(path):
    """Reads a Keras-2 weights file as a list of (layer name, [arrays]) for layers owning weights.

    A group that belongs to a nested model holds the weights of several layers; they are split by
    the owner part of each weight name (``conv2d_1/kernel:0`` belongs to ``conv2d_1``).
    """
    if not os.path.isfile(path):
        raise ModelError(f"weights file {path!r} does not exist")
    if not h5py.is_hdf5(path):
        raise ModelError(f"weights file {path!r} is not an HDF5 file (corrupt or truncated?)")
    groups = []
    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            if "layer_names" not in root.attrs:
                raise ModelError(f"{path!r} is not a Keras-2 weights file (no 'layer_names' attribute)")
            for layer_name in map(_decode, root.attrs["layer_names"]):
                group = root[layer_name]
                owners = []
                for weight_name in map(_decode, group.attrs.get("weight_names", [])):
                    owner = weight_name.rsplit("/", 1)[0] if "/" in weight_name else layer_name
                    if not owners or owners[-1][0] != owner:
                        owners.append((owner, []))
                    owners[-1][1].append(np.asarray(group[weight_name]))
                groups.extend(owners)
    except ModelError:
        raise
    except (OSError, KeyError, ValueError) as e:
        raise ModelError(f"cannot read weights file {path!r}: {type(e).__name__}: {e}") from e
    return groups


def load_legacy_weights(model, path):
    """Loads a Keras-2 weights-only HDF5 file into ``model``, matching weighted layers by order.

    The published repos save with ``model.save_weights`` (TF 1.x / Keras 2); layer names differ from
    ours, so layers owning weights are paired in order, and every shape is checked before any weight
    is assigned. Raises :class:`ModelError` naming the first layer that does not fit.
    """
    path = os.fspath(path)
    file_layers = _legacy_weight_groups(path)
    model_layers = _leaf_layers_with_weights(model)
    for index, (layer, (file_name, arrays)) in enumerate(zip(model_layers, file_layers)):
        expected = [tuple(w.shape) for w in layer.weights]
        found = [tuple(a.shape) for a in arrays]
        if expected != found:
            raise ModelError(
                f"weights file {path!r} does not fit model {model.name!r}: weighted layer #{index} is "
                f"{file_name!r} with shapes {found} in the file but {layer.name!r} with shapes {expected} in the model"
            )
    if len(model_layers) != len(file_layers):
        raise ModelError(
            f"weights file {path!r} does not fit model {model.name!r}: it has {len(file_layers)} layers with weights, "
            f"the model has {len(model_layers)}"
        )
    for layer, (_, arrays) in zip(model_layers, file_layers):
        layer.set_weights(arrays)


def save_legacy_weights(model, path, keras_version="2.2.4"):
    """Writes ``model``'s weights in the Keras-2 weights-only layout, atomically, one group per layer."""
    path = os.fspath(path)
    layers = _leaf_layers_with_weights(model)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["layer_names"] = [layer.name.encode("utf8") for layer in layers]
            f.attrs["backend"] = b"tensorflow"
            f.attrs["keras_version"] = keras_version.encode("utf8")
            for layer in layers:
                group = f.create_group(layer.name)
                names = [f"{layer.name}/{w.name}:0" for w in layer.weights]
                group.attrs["weight_names"] = [n.encode("utf8") for n in names]
                for name, w in zip(names, layer.weights):
                    group.create_dataset(name, data=np.asarray(w.numpy()))
