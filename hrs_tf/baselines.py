"""The HRS paper's baseline defenses as models (HRS section 6.1, REFERENCE sections 2-3).

- :func:`with_defensive_dropout`: a trained model with its Dropout after FC1 replaced by
  :class:`~hrs_tf.baseline_layers.DefensiveDropout` (train rate r, test rate r'), weights copied, no
  retraining (the HRS paper's "Dropout 0.1 / 0.3 / 0.7" and the defensive-dropout search);
- :func:`with_sap`: SAP inserted between FC1 (+ its dropout) and FC2 of a trained model, no retraining;
- :func:`build_gaussian_noise_model`: noise on the input ("init") and before every later conv ("inner"),
  trained with dropout too (HRS appendix C.2);
- :func:`train_baseline` and its parts: train (or wrap) one of them, returning ``(model, record)`` in the
  style of :func:`hrs_tf.training.train_base_model`.

Models are rebuilt as a ``keras.Sequential`` of copies of the original layers (same names, same weights)
with the defense layers inserted; a rebuilt model with its randomness ``off`` computes exactly the original
model's inference function (checked on a probe batch when built).
"""

import os
import time

import keras
import numpy as np

from hrs_tf import fileio, metrics, models, serialization, stochastic, training
from hrs_tf.baseline_layers import (DefensiveDropout, GaussianNoiseInjection, StochasticActivationPruning,
                                    check_rate, check_stddev)
from hrs_tf.errors import ConfigError, ModelError

DEFENSES = ("dropout", "gaussian", "sap")
# HRS appendix C.2: (init, inner) noise deviations; Liu et al.'s values on MNIST, 10x smaller on CIFAR-10.
GAUSSIAN_DEFAULTS = {"mnist": (0.2, 0.1), "fashion_mnist": (0.2, 0.1), "cifar10": (0.02, 0.01)}
NOISE_BEFORE = ("conv1", "conv2", "conv3", "conv4")


# -- rebuilding a trained model with a defense layer ----------------------------------------------------
def _chain(model):
    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def _layer_index(model, layers, name, purpose):
    names = [layer.name for layer in layers]
    if name not in names:
        raise ModelError(f"model {model.name!r} has no layer {name!r} ({purpose}); its layers are {', '.join(names)}")
    return names.index(name)


def rebuild(model, edit, name):
    """A ``Sequential`` of copies of ``model``'s layers, where ``edit(layer)`` returns the list of layers to
    put in its place (``layer`` itself stands for its copy); copied layers get the original weights."""
    new_layers, copies = [], []
    for layer in _chain(model):
        for item in edit(layer):
            if item is layer:
                item = keras.layers.deserialize(keras.layers.serialize(layer))
                copies.append((item, layer))
            new_layers.append(item)
    rebuilt = keras.Sequential([keras.Input(shape=model.input_shape[1:])] + new_layers, name=name)
    for copy, layer in copies:
        copy.set_weights(layer.get_weights())
    _check_same_function(model, rebuilt)
    return rebuilt


def _check_same_function(model, rebuilt):
    """ModelError unless ``rebuilt`` with randomness off computes ``model``'s inference outputs (a model
    that is not a plain chain of layers cannot be rebuilt layer by layer)."""
    probe = np.random.default_rng(0).random((2,) + tuple(model.input_shape[1:])).astype(np.float32)
    with stochastic.randomness(model, stochastic.OFF), stochastic.randomness(rebuilt, stochastic.OFF):
        expected = np.asarray(model(probe, training=False))
        got = np.asarray(rebuilt(probe, training=False))
    if expected.shape != got.shape or not np.allclose(expected, got, rtol=1e-5, atol=1e-5):
        raise ModelError(f"model {model.name!r} is not a plain chain of layers (conv1 .. logits); "
                         "the defense layer cannot be inserted into it")


def dropout_after_fc1(model):
    """The (Defensive)Dropout layer right after FC1 of ``model``, or None."""
    layers = _chain(model)
    i = _layer_index(model, layers, "fc1", "the first fully connected layer")
    following = layers[i + 1] if i + 1 < len(layers) else None
    return following if isinstance(following, (keras.layers.Dropout, DefensiveDropout)) else None


def with_defensive_dropout(model, test_rate, train_rate=None, seed=None, name=None):
    """``model`` (trained with dropout rate r after FC1) with that Dropout replaced by
    ``DefensiveDropout(r, test_rate)``: dropout on at test time with rate r' and scaling 1 / (1 - r')
    (defensive-dropout paper section 3.2). Weights copied, no retraining.

    A model trained without dropout has no such layer: pass ``train_rate=0`` to insert one after FC1.
    ``train_rate`` given for a model with a Dropout must equal its rate.
    """
    test_rate = check_rate(test_rate, "test_rate")
    train_rate = None if train_rate is None else check_rate(train_rate, "train_rate")
    existing = dropout_after_fc1(model)
    if existing is None and train_rate is None:
        raise ModelError(f"model {model.name!r} has no Dropout layer after 'fc1' (its layers: "
                         f"{', '.join(layer.name for layer in _chain(model))}); defensive dropout replaces the train-time "
                         "dropout of a model trained with dropout (pass train_rate=0 to add one)")
    if existing is not None and train_rate is not None and abs(existing.rate - train_rate) > 1e-9:
        raise ConfigError(f"train_rate={train_rate} differs from the rate {existing.rate} of {model.name!r}'s dropout layer")
    rate = existing.rate if existing is not None else train_rate
    layer = DefensiveDropout(rate, test_rate, seed=seed, name="dropout")

    def edit(item):
        if item is existing:
            return [layer]
        if existing is None and item.name == "fc1":
            return [item, layer]
        return [item]

    return rebuild(model, edit, name or f"{model.name}_defensive_dropout")


def with_sap(model, variant="exact", seed=None, name=None):
    """``model`` with :class:`StochasticActivationPruning` between FC1 (+ its dropout) and FC2 (HRS
    section 6.1: on the base model, no retraining). Weights copied."""
    layers = _chain(model)
    fc1 = _layer_index(model, layers, "fc1", "SAP goes after the first fully connected layer")
    fc2 = _layer_index(model, layers, "fc2", "SAP goes before the second fully connected layer")
    if fc2 < fc1:
        raise ModelError(f"model {model.name!r} has 'fc2' before 'fc1'")
    layer = StochasticActivationPruning(variant, seed=seed, name="sap")
    return rebuild(model, lambda item: [layer, item] if item.name == "fc2" else [item],
                   name or f"{model.name}_sap_{variant}")


def build_gaussian_noise_model(arch, init_std, inner_std, dropout_rate=None, seed=None, name=None):
    """The base CNN of ``arch`` with Gaussian noise on the input of every conv layer: ``init_std`` before
    conv1 (on the image), ``inner_std`` before conv2, conv3 and conv4 (random self-ensemble, Liu et al.
    2018; HRS appendix C.2: 0.2 / 0.1 on MNIST, 0.02 / 0.01 on CIFAR-10), with the architecture's
    dropout after FC1 for training. Fresh weights (those of ``build_base_model`` under the same seed)."""
    arch = models.get_architecture(arch)
    init_std, inner_std = check_stddev(init_std, "init_std"), check_stddev(inner_std, "inner_std")
    base = models.build_base_model(arch, dropout_rate=dropout_rate)

    def edit(item):
        if item.name not in NOISE_BEFORE:
            return [item]
        k = NOISE_BEFORE.index(item.name)
        noise = GaussianNoiseInjection(init_std if k == 0 else inner_std, seed=None if seed is None else int(seed) * 10 + k,
                                       name="noise_init" if k == 0 else f"noise_{item.name}")
        return [noise, item]

    return rebuild(base, edit, name or f"gaussian_{arch.name}")


def reseed_layers(model, seed):
    """Restarts the seed generator of every layer of ``model`` that has one (Keras dropout, stochastic
    layers) from ``seed``: the draws that follow depend only on ``seed`` (e.g. per epoch or per result row,
    so that a resumed run draws as an uninterrupted one)."""
    for i, layer in enumerate(model.layers):
        generator = getattr(layer, "seed_generator", None)
        if generator is not None:
            generator.state.assign(np.array([int(seed), i * 1_000_003], np.int64).astype(generator.state.dtype))


def gaussian_defaults(dataset_name):
    """(init, inner) noise deviations of HRS appendix C.2 for a data set."""
    return GAUSSIAN_DEFAULTS[dataset_name]


# -- training / wrapping ---------------------------------------------------------------------------------
def check_defense(defense):
    if defense not in DEFENSES:
        raise ConfigError(f"unknown defense {defense!r}; choose one of {', '.join(DEFENSES)}")
    return defense


def _finish_record(record, model, dataset, eval_repeats, **fields):
    """Adds the defense fields and the clean accuracy (each image its own randomness, repeated)."""
    record.update(kind="baseline_model", **fields)
    record["clean_accuracy"] = metrics.clean_accuracy(model, dataset.x_test, dataset.y_test, eval_repeats)
    record["stochastic_layers"] = [layer.name for layer in stochastic.stochastic_layers(model)]
    return record


def train_dropout_model(dataset, dropout_rate, test_rate=None, eval_repeats=5, **fit_settings):
    """A base model trained with dropout ``dropout_rate`` after FC1 (reference recipe); with ``test_rate``
    the returned model keeps dropout on at test time (:func:`with_defensive_dropout`)."""
    rate = check_rate(dropout_rate, "dropout_rate")
    model, record = training.train_base_model(dataset, dropout_rate=rate, **fit_settings)
    if test_rate is not None:
        model = with_defensive_dropout(model, test_rate, train_rate=rate)
    return model, _finish_record(record, model, dataset, eval_repeats, defense="dropout", test_rate=test_rate)


def train_gaussian_model(dataset, init_std=None, inner_std=None, eval_repeats=5, seed=0, **fit_settings):
    """The Gaussian-noise model trained with the reference recipe (noise on in training and at test)."""
    default_init, default_inner = gaussian_defaults(dataset.name)
    init_std = default_init if init_std is None else check_stddev(init_std, "init_std")
    inner_std = default_inner if inner_std is None else check_stddev(inner_std, "inner_std")

    def build(architecture, dropout_rate=None):
        return build_gaussian_noise_model(architecture, init_std, inner_std, dropout_rate, seed=seed)

    model, record = training.train_base_model(dataset, seed=seed, build_model=build, **fit_settings)
    return model, _finish_record(record, model, dataset, eval_repeats, defense="gaussian", init_std=init_std,
                                 inner_std=inner_std)


def wrap_trained_model(base_model, dataset, defense, test_rate=None, sap_variant="exact", eval_repeats=5,
                       source=None):
    """A trained model made into a baseline without retraining: ``sap`` (SAP between FC1 and FC2) or
    ``dropout`` (test-time dropout at ``test_rate``). Returns ``(model, record)``."""
    if check_defense(defense) == "gaussian":
        raise ConfigError("the gaussian defense is trained with its noise; it cannot wrap a trained model")
    start = time.time()
    if defense == "sap":
        model = with_sap(base_model, sap_variant)
        fields = {"sap_variant": sap_variant}
    else:
        if test_rate is None:
            raise ConfigError("wrapping a trained model in defensive dropout needs a test_rate")
        model = with_defensive_dropout(base_model, test_rate)
        fields = {"dropout_rate": dropout_after_fc1(model).rate, "test_rate": float(test_rate)}
    record = {"dataset": dataset.name, "data_source": dataset.source, "base_model": source, "retrained": False,
              "num_params": models.count_params(model), "versions": training.versions()}
    record = _finish_record(record, model, dataset, eval_repeats, defense=defense, **fields)
    record["seconds"] = round(time.time() - start, 1)
    return model, record


def train_baseline(dataset, defense, dropout_rate=None, test_rate=None, init_std=None, inner_std=None,
                   eval_repeats=5, **fit_settings):
    """Trains baseline ``defense`` (``dropout`` or ``gaussian``; SAP needs no training, see
    :func:`wrap_trained_model`). ``fit_settings``: arch, epochs, batch_size, learning_rate, seed, verbose."""
    if check_defense(defense) == "sap":
        raise ConfigError("SAP is inserted into a trained model without retraining; give the trained base model")
    if defense == "dropout":
        if dropout_rate is None:
            raise ConfigError("the dropout defense needs a train-time dropout_rate")
        return train_dropout_model(dataset, dropout_rate, test_rate, eval_repeats, **fit_settings)
    if test_rate is not None:
        raise ConfigError("test_rate applies to the dropout defense only")
    return train_gaussian_model(dataset, init_std, inner_std, eval_repeats, dropout_rate=dropout_rate, **fit_settings)


def write_model(model, record, output):
    """Saves ``model`` to ``output`` (.h5) and ``record`` to the JSON sidecar beside it; returns the sidecar."""
    if not str(output).endswith(".h5"):
        raise ConfigError(f"output {output!r} must end in .h5")
    serialization.save_model(model, output)
    sidecar = os.path.splitext(output)[0] + ".json"
    fileio.write_json(sidecar, dict(record, output=str(output)))
    return sidecar
