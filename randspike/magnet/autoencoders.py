"""MagNet's denoising autoencoders (Meng & Chen 2017, section 4.1; the published ``defensive_models.py`` as the
Random Spiking repo's ``train_defense.py`` uses it; REFERENCE section 9).

**Structure.** A structure is a list of items: an integer n is ``Conv2D(n, 3x3, same, sigmoid, activity L2
1e-9)``, ``"average"`` an ``AveragePooling2D(2)`` (``"max"``: ``MaxPooling2D(2)``, also in the published code);
the decoder mirrors the encoder (integers again as convolutions, a pooling as ``UpSampling2D(2)``) and ends with
``Conv2D(channels, 3x3, same, sigmoid)``. The paper's structures: MNIST I = ``[3, "average", 3]``, II = ``[3]``;
Fashion-MNIST / CIFAR-10: ``[3]``.

**Training** (``DenoisingAutoEncoder.train``): Adam (Keras defaults), mean squared error, clean images
reconstructed from ``clip(x + v_noise * N(0, 1), 0, 1)`` (the noise drawn once for the whole run, as the published
code does, here from the run's seed), batch 256, shuffled every epoch; MNIST v_noise 0.1, 100 epochs, others
0.025, 400 epochs. :func:`train_autoencoder` is resumable per epoch: a checkpoint (:mod:`hrs_tf.training.checkpoint`)
holds the weights, the optimizer state and the history, so a killed run restarted with the same settings continues
at the next epoch; each epoch's shuffling depends only on (seed, epoch).
"""

import time

import keras
import numpy as np

from hrs_tf import checks
from hrs_tf.errors import ConfigError
from hrs_tf.training import checkpoint as checkpoints
from hrs_tf.training.recipe import StepProgress, epoch_seed

STRUCTURE_I = (3, "average", 3)  # MNIST reformer and detector I
STRUCTURE_II = (3,)  # MNIST detector II; the Fashion-MNIST / CIFAR-10 autoencoders
POOLINGS = ("average", "max")
ACTIVATION = "sigmoid"  # train_defense.py: activation = "sigmoid"
REG_STRENGTH = 1e-9  # train_defense.py: activity L2 on every convolution
BATCH_SIZE = 256
V_NOISE = {"mnist": 0.1, "fashion_mnist": 0.025, "cifar10": 0.025}
EPOCHS = {"mnist": 100, "fashion_mnist": 400, "cifar10": 400}
IDENTITY_KEYS = ("train_fingerprint", "structure", "input_shape", "v_noise", "batch_size", "seed")


def check_structure(structure):
    """``structure`` as a tuple of positive filter counts and pooling names; ConfigError (one line) otherwise.
    Text such as ``"3,average,3"`` is accepted."""
    if isinstance(structure, str):
        structure = [item.strip() for item in structure.split(",") if item.strip()]
    if not isinstance(structure, (list, tuple)) or not structure:
        raise ConfigError(f"autoencoder structure {structure!r} must be a non-empty list of filter counts and "
                          f"poolings ({', '.join(POOLINGS)})")
    items = []
    for item in structure:
        if isinstance(item, str) and item.strip().lower() in POOLINGS:
            items.append(item.strip().lower())
            continue
        if isinstance(item, str) and item.strip().isdigit():
            item = int(item.strip())
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool) and item >= 1:
            items.append(int(item))
            continue
        raise ConfigError(f"autoencoder structure item {item!r} is neither a positive filter count nor one of "
                          f"{', '.join(POOLINGS)}")
    return tuple(items)


def _convolution(filters, name, reg_strength):
    return keras.layers.Conv2D(filters, (3, 3), padding="same", activation=ACTIVATION,
                               activity_regularizer=keras.regularizers.L2(reg_strength), name=name)


def build_autoencoder(input_shape, structure, name="autoencoder", reg_strength=REG_STRENGTH):
    """The denoising autoencoder of ``structure`` for images of ``input_shape`` (H, W, C) (module docstring)."""
    structure = check_structure(structure)
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3:
        raise ConfigError(f"autoencoder input shape {input_shape} must be (height, width, channels)")
    inputs = keras.Input(shape=input_shape, name=f"{name}_input")
    x = inputs
    for i, item in enumerate(structure):
        if item == "average":
            x = keras.layers.AveragePooling2D((2, 2), padding="same", name=f"encoder_{i}_average")(x)
        elif item == "max":
            x = keras.layers.MaxPooling2D((2, 2), padding="same", name=f"encoder_{i}_max")(x)
        else:
            x = _convolution(item, f"encoder_{i}_conv", reg_strength)(x)
    for i, item in enumerate(reversed(structure)):
        if item in POOLINGS:
            x = keras.layers.UpSampling2D((2, 2), name=f"decoder_{i}_upsampling")(x)
        else:
            x = _convolution(item, f"decoder_{i}_conv", reg_strength)(x)
    outputs = _convolution(input_shape[-1], "decoded", reg_strength)(x)
    if tuple(outputs.shape[1:]) != input_shape:
        raise ConfigError(f"autoencoder structure {list(structure)} maps images {input_shape} to "
                          f"{tuple(outputs.shape[1:])}: each pooling needs even heights and widths")
    return keras.Model(inputs, outputs, name=name)


def layer_summary(model):
    """``["Conv2D(3)", "AveragePooling2D", ...]``: the layers of an autoencoder (a resume must fit them)."""
    return [type(layer).__name__ + (f"({layer.filters})" if hasattr(layer, "filters") else "")
            for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def noisy_inputs(x, v_noise, seed):
    """``clip(x + v_noise * N(0, 1), 0, 1)`` with the noise drawn from ``seed`` (float32)."""
    rng = np.random.default_rng(int(seed))
    noise = rng.standard_normal(x.shape, dtype=np.float32) * np.float32(v_noise)
    return np.clip(x + noise, 0.0, 1.0).astype(np.float32)


def reconstruction_mse(model, x, batch_size=BATCH_SIZE):
    """Mean squared error of ``model``'s reconstruction of ``x`` (the published code's validation loss)."""
    total = 0.0
    for a in range(0, len(x), batch_size):
        out = np.asarray(model(x[a:a + batch_size], training=False))
        total += float(np.sum(np.square(out - x[a:a + batch_size], dtype=np.float64)))
    return total / float(x.size)


def train_autoencoder(model, x_train, epochs, checkpoint, v_noise, x_validation=None, batch_size=BATCH_SIZE, seed=0,
                      verbose=0, log=print, what="autoencoder"):
    """Trains ``model`` to reconstruct ``x_train`` from its noisy copies for ``epochs`` epochs; returns the
    per-epoch history (loss, validation MSE on clean ``x_validation`` if given, seconds).

    ``checkpoint``: the file written after every epoch and resumed from (a checkpoint of other data, structure,
    noise, batch or seed is refused, naming the difference). A progress line per epoch goes to ``log``.
    """
    epochs = checks.count(epochs, "epochs", minimum=1)
    batch_size = checks.count(batch_size, "batch_size", minimum=1)
    v_noise = checks.nonnegative(v_noise, "v_noise")
    seed = checks.count(seed, "seed")
    x_train = np.asarray(x_train, np.float32)
    run = {"train_fingerprint": checkpoints.data_fingerprint(x_train, np.zeros(0, np.int64)),
           "structure": layer_summary(model),
           "input_shape": list(x_train.shape[1:]), "v_noise": float(v_noise), "batch_size": int(batch_size),
           "seed": int(seed)}
    model.compile(optimizer=keras.optimizers.Adam(), loss="mean_squared_error")
    model.optimizer.build(model.trainable_variables)
    groups = {"weights": model.weights, "optimizer": model.optimizer.variables}
    state = checkpoints.resume(checkpoint, run, IDENTITY_KEYS, groups, f"a training run of {what}", epochs)
    start, history = (state["epoch"], state["history"]) if state else (0, [])
    if state and start < epochs:
        log(f"{what}: resuming from {checkpoint} after epoch {start}")
    if start >= epochs:
        log(f"{what}: {start} epochs already trained in {checkpoint}")
        return history
    noisy = noisy_inputs(x_train, v_noise, seed)
    progress = [StepProgress(total_epochs=epochs)] if verbose == 2 else []
    for epoch in range(start, epochs):
        began = time.time()
        keras.utils.set_random_seed(epoch_seed(seed, epoch))
        logs = model.fit(noisy, x_train, batch_size=batch_size, initial_epoch=epoch, epochs=epoch + 1, shuffle=True,
                         verbose=1 if verbose == 1 else 0, callbacks=progress).history
        record = {"epoch": epoch + 1, "loss": float(logs["loss"][-1]), "seconds": round(time.time() - began, 1)}
        if x_validation is not None and len(x_validation):
            record["validation_mse"] = reconstruction_mse(model, np.asarray(x_validation, np.float32), batch_size)
        history.append(record)
        checkpoints.save(checkpoint, {"settings": run, "epoch": epoch + 1, "history": history}, groups)
        shown = f", validation MSE {record['validation_mse']:.5f}" if "validation_mse" in record else ""
        log(f"{what} epoch {epoch + 1}/{epochs}: loss {record['loss']:.5f}{shown}, {record['seconds']:.0f} s")
    return history
