"""``hash[:CR1,CR2]``: the defensive hash classifier (Wang et al., IEEE TNNLS 2021, section III-C).

The last two fully connected layers of a trained model are replaced by hashed layers (:class:`HashedDense`,
HashedNets' hashing trick) at compression rates (CR1, CR2) with fresh weights (U(+-1/sqrt(n_in)), the hash seed
1691 of the authors' code), every other layer keeps its trained weights, and the whole model is retrained for a
few epochs (the paper: 2-3; ``default_epochs`` 3) -- an *installed* defense, resumable per epoch
(:func:`hrs_tf.training.fine_tuning.fine_tune`).

Default rates, the paper's choice after its search (section V-A-2): CR1 = 1/16 (N1 M1)^-1/2 and CR2 = 2/N2, with
(N1, M1), (N2, M2) the (inputs, outputs) of the two layers; on the seven-layer model (256x256, 256x10) these are
(1/4096, 1/128), K = 16 and 20 real weights. Rates are written as fractions (``hash:1/4096,1/128``) or decimals.
"""

import math

import keras

from hashdef import hashing
from hashdef.layers.hashed_dense import HashedDense
from hrs_tf import checks
from hrs_tf.defenses.registry import INSTALLED, Argument, Defense, register, write_model
from hrs_tf.errors import ConfigError, ModelError
from hrs_tf.evaluation import metrics
from hrs_tf.models import count_params, surgery
from hrs_tf.training import fine_tuning

HASH_SEED = 1691  # the seed of xxHash32 in the HashedNets authors' code (REFERENCE section 5)
DEFAULT_EPOCHS = 3  # section V-A-2: "we retrain the defensive hash model for three epochs"


def fully_connected_layers(model):
    """The Dense / HashedDense layers of a plain chain ``model``, in order."""
    return [layer for layer in surgery.chain(model) if isinstance(layer, (keras.layers.Dense, HashedDense))]


def replaced_layers(model):
    """The last two fully connected layers of ``model`` (the ones the defensive hash classifier replaces)."""
    layers = fully_connected_layers(model)
    if len(layers) < 2:
        raise ModelError(f"model {model.name!r} has {len(layers)} fully connected layer(s); the defensive hash classifier "
                         "replaces the last two")
    return layers[-2:]


def layer_shape(layer):
    """(inputs, outputs) of a built Dense or HashedDense layer."""
    if isinstance(layer, HashedDense):
        return tuple(layer.virtual_shape)
    return tuple(int(d) for d in layer.kernel.shape)


def paper_rates(shapes):
    """The paper's rates for layers of shapes ((N1, M1), (N2, M2)): (1/16 (N1 M1)^-1/2, 2/N2), capped at 1."""
    (n1, m1), (n2, _) = shapes
    return min(1.0, 1.0 / (16.0 * math.sqrt(n1 * m1))), min(1.0, 2.0 / n2)


def rate_text(rate):
    """``1/4096`` for a reciprocal of an integer, else the shortest exact decimal."""
    inverse = 1.0 / rate
    return f"1/{round(inverse)}" if abs(inverse - round(inverse)) < 1e-6 * inverse else repr(rate)


def with_hashed_classifier(model, compression_rates=(None, None), hash_seed=HASH_SEED, seed=0, name=None):
    """``model`` with its last two fully connected layers replaced by fresh :class:`HashedDense` layers of the same
    units, activation and names at ``compression_rates`` (None: the paper's rate); other weights copied."""
    old = replaced_layers(model)
    shapes = [layer_shape(layer) for layer in old]
    defaults = paper_rates(shapes)
    rates = [default if rate is None else hashing.parse_rate(rate) for rate, default in zip(compression_rates, defaults)]
    seed = 0 if seed is None else checks.count(seed, "seed")
    replacements = {}
    for k, (layer, (n_in, _), rate) in enumerate(zip(old, shapes, rates)):
        limit = 1.0 / math.sqrt(n_in)
        replacements[layer.name] = HashedDense(
            layer.units, rate, activation=keras.activations.serialize(layer.activation), use_bias=layer.use_bias,
            hash_seed=hash_seed, kernel_initializer=keras.initializers.RandomUniform(-limit, limit, seed=seed * 2 + k),
            name=layer.name)
    return surgery.rebuild(model, lambda item: [replacements.get(item.name, item)],
                           name or f"{model.name}_hash")


def hashed_summary(model):
    """{layer name: {virtual shape, compression rate, real weights K}} of the hashed layers of ``model``."""
    return {layer.name: {"virtual_shape": list(layer.virtual_shape), "compression_rate": layer.compression_rate,
                         "num_buckets": int(layer.num_buckets)}
            for layer in surgery.chain(model) if isinstance(layer, HashedDense)}


def _rate_argument(name, which):
    return Argument(name, hashing.parse_rate, None, f"compression rate of the {which} replaced layer (real / virtual "
                    "weights, e.g. 1/4096; default: the paper's rule)", format=rate_text)


@register
class DefensiveHashClassifier(Defense):
    name = "hash"
    title = "Hash"
    summary = "last two FC layers replaced by hashed layers (HashedNets) at high compression, retrained 3 epochs"
    reference = "Wang et al. 2021 (hash + GI) section III-C; Chen et al. 2015 (HashedNets); REFERENCE section 5"
    make = INSTALLED
    arguments = (_rate_argument("cr1", "first"), _rate_argument("cr2", "second"),
                 Argument("hash_seed", lambda text: checks.count(text, "hash_seed"), HASH_SEED,
                          "seed of the xxHash32 index and sign hashes", keyword_only=True, metavar="SEED"))
    default_epochs = DEFAULT_EPOCHS

    def label(self, args):
        if args["cr1"] is None and args["cr2"] is None:
            return "Hash"
        shown = ["paper" if r is None else rate_text(r) for r in (args["cr1"], args["cr2"])]
        return f"Hash ({shown[0]}, {shown[1]})"

    def apply(self, args, model, seed=None):
        return with_hashed_classifier(model, (args["cr1"], args["cr2"]), args["hash_seed"], seed=seed)

    def train(self, args, dataset, output, *, epochs, seed=0, verbose=2, log=print, source_model=None, siblings=None,
              **settings):
        """Fine-tunes ``source_model`` (the trained model with the hashed layers installed) and writes it."""
        if source_model is None:
            raise ConfigError(f"defense {self.name!r} is installed on a trained model; give its source model")
        unknown = set(settings) - {"arch", "dropout_rate", "batch_size", "learning_rate", "eval_repeats", "train_images"}
        if unknown:
            raise ConfigError(f"defense {self.name!r} does not take the setting(s) {', '.join(sorted(unknown))}")
        tune = {k: settings[k] for k in ("batch_size", "learning_rate", "train_images") if settings.get(k) is not None}
        layers = hashed_summary(source_model)
        history = fine_tuning.fine_tune(source_model, dataset, epochs, fine_tuning.checkpoint_path(output), seed=seed,
                                        verbose=verbose, log=log, what="a defensive-hash-classifier run",
                                        identity={"hashed_layers": layers}, **tune)
        record = {"kind": "defensive_hash_classifier", "dataset": dataset.name, "hashed_layers": layers,
                  "hash_seed": args["hash_seed"], "epochs": int(epochs), "seed": int(seed), "history": history,
                  "num_params": count_params(source_model),
                  "test_accuracy": metrics.accuracy(source_model, dataset.x_test, dataset.y_test), **tune}
        write_model(source_model, record, output)
