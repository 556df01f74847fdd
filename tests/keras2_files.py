"""Writers of HDF5 weight files in the exact layout Keras 2.2.4 ``save_weights`` produced (test fixtures)."""

import h5py
import keras

KERAS2_NAMES = {"Conv2D": "conv2d", "MaxPooling2D": "max_pooling2d", "Flatten": "flatten", "Dense": "dense",
                "Dropout": "dropout", "Activation": "activation"}


def write_keras2_weights(path, model, separate_activations=False):
    """Writes ``model``'s layers as Keras 2 did: one group per layer, weightless ones included, Keras-2 names
    (``conv2d_1``, ``dense_2``...) and weight names like ``conv2d_1/kernel:0``.

    ``separate_activations`` adds an ``activation_<n>`` group after every ReLU layer, as the published HRS
    repo's channels (``Conv2D`` then ``Activation('relu')``).
    """
    counters = {}
    layer_names = []
    with h5py.File(path, "w") as f:
        for layer in model.layers:
            kinds = [type(layer).__name__]
            if separate_activations and getattr(layer, "activation", None) is keras.activations.relu:
                kinds.append("Activation")
            for kind in kinds:
                short = KERAS2_NAMES[kind]
                counters[short] = counters.get(short, 0) + 1
                name = f"{short}_{counters[short]}"
                layer_names.append(name.encode())
                group = f.create_group(name)
                weights = layer.weights if kind != "Activation" else []
                weight_names = [f"{name}/{w.name}:0".encode() for w in weights]
                group.attrs["weight_names"] = weight_names
                for weight_name, w in zip(weight_names, weights):
                    group.create_dataset(weight_name.decode(), data=w.numpy())
        f.attrs["layer_names"] = layer_names
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
