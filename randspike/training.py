"""The Random Spiking paper's training recipes (Table 7; REFERENCE section 4), resumable per epoch.

- ``rs_mnist``: SGD lr 0.01, momentum 0.9, Nesterov, batch 128, 50 epochs;
- ``wrn``: SGD lr 0.1 Nesterov, momentum 0.9, the rate x0.2 at epochs 60, 120 and 160, batch 128, 200 epochs (the
  WRN's L2 5e-4 is in its layers).

Augmentation (:mod:`randspike.augmentation`) by data set by default: MNIST the published code's Keras-2
``ImageDataGenerator`` settings with their Keras-2 meaning (rotation 10 degrees, shear 0.2 *degrees*, zoom 0.2, shift 4
= whole-pixel shifts of -3..3, reflect fill; Table 7 says none, the repo uses it), Fashion-MNIST shifts + horizontal
flip (Table 7), CIFAR-10 shift + rotation + flip + zoom + shear. Every setting is configurable. Training runs through
:func:`hrs_tf.training.fine_tuning.fine_tune`: a checkpoint after every epoch, a killed run continues at its next
epoch, every epoch's shuffling, augmentation and noise depend only on (seed, epoch).
"""

import dataclasses

import keras

from hrs_tf import checks
from hrs_tf.training import fine_tuning

MOMENTUM = 0.9


@dataclasses.dataclass(frozen=True)
class Recipe:
    """An SGD recipe: learning rate (with step drops), momentum, Nesterov, batch size, epochs, augmentation."""

    learning_rate: float
    epochs: int
    batch_size: int = 128
    drop_epochs: tuple = ()
    drop_factor: float = 0.2
    augmentation: str = "none"

    def describe(self):
        drops = f", x{self.drop_factor:g} at epochs {', '.join(map(str, self.drop_epochs))}" if self.drop_epochs else ""
        return (f"SGD lr {self.learning_rate:g}{drops}, momentum {MOMENTUM:g}, Nesterov, batch {self.batch_size}, "
                f"{self.epochs} epochs, augmentation {self.augmentation}")


PAPER_RECIPES = {"rs_mnist": Recipe(0.01, 50), "wrn": Recipe(0.1, 200, drop_epochs=(60, 120, 160))}


def paper_epochs(dataset_name, arch=None):
    """Table 7's training epochs of ``arch`` (default: the data set's network): 50 RS MNIST CNN, 200 WRN."""
    from randspike import architectures

    arch = architectures.DEFAULT_ARCHITECTURE[dataset_name] if arch is None else architectures.check_arch(arch)
    return PAPER_RECIPES[arch].epochs


def with_paper_epochs(dataset_name, overrides):
    """A study's plan ``overrides`` with ``epochs`` / ``magnet_epochs`` that are missing or None set to the paper's
    for the data set and the network its ``settings`` name (Table 7; MagNet's autoencoders 100 MNIST, 400 others)."""
    from randspike.magnet import autoencoders

    overrides = dict(overrides)
    if overrides.get("epochs") is None:
        overrides["epochs"] = paper_epochs(dataset_name, dict(overrides.get("settings") or ()).get("arch"))
    if overrides.get("magnet_epochs") is None:
        overrides["magnet_epochs"] = autoencoders.EPOCHS[dataset_name]
    return overrides


def recipe_for(arch, dataset_name, epochs=None, batch_size=None, learning_rate=None, augmentation=None):
    """The paper's recipe for ``arch`` on ``dataset_name`` with any of its settings overridden."""
    from randspike import augmentation as augmentations

    recipe = PAPER_RECIPES[arch]
    text = dataset_name if augmentation is None else str(augmentation).strip()
    augmentations.parse(text)  # refuses an unknown name or setting here, before any work
    changes = {"augmentation": text}
    if epochs is not None:
        changes["epochs"] = checks.count(epochs, "epochs", minimum=1)
    if batch_size is not None:
        changes["batch_size"] = checks.count(batch_size, "batch_size", minimum=1)
    if learning_rate is not None:
        changes["learning_rate"] = checks.positive(learning_rate, "learning_rate")
    return dataclasses.replace(recipe, **changes)


def learning_rate(recipe, steps_per_epoch):
    """The recipe's learning rate: a constant, or x ``drop_factor`` at each of ``drop_epochs`` (a schedule over
    iterations, so a resumed optimizer, whose iteration count is checkpointed, continues it)."""
    if not recipe.drop_epochs:
        return recipe.learning_rate
    boundaries = [int(e) * int(steps_per_epoch) for e in recipe.drop_epochs]
    values = [recipe.learning_rate * recipe.drop_factor ** k for k in range(len(boundaries) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def optimizer(recipe, steps_per_epoch):
    """SGD, momentum 0.9, Nesterov, at the recipe's learning rate (Table 7)."""
    return keras.optimizers.SGD(learning_rate=learning_rate(recipe, steps_per_epoch), momentum=MOMENTUM, nesterov=True)


def distillation_loss(temperature):
    """Cross-entropy of soft labels against softmax(z / T) (Papernot et al. 2016 as configured by C&W)."""
    cross_entropy = keras.losses.CategoricalCrossentropy(from_logits=True)

    def loss(y_true, logits):
        return cross_entropy(y_true, logits / temperature)

    return loss


def train(model, dataset, recipe, checkpoint, seed=0, train_data=None, temperature=None, verbose=2, log=print,
          what="a Random Spiking scheme run", identity=None, train_images=None):
    """Trains ``model`` with ``recipe`` on ``train_data`` (default: the training set; labels may be soft, then
    ``temperature`` is the distillation temperature), resumable at ``checkpoint``; returns the per-epoch history.

    ``temperature`` without soft labels trains on one-hot labels at T (the distillation teacher)."""
    from randspike import augmentation as augmentations

    x, y = (dataset.x_train, dataset.y_train) if train_data is None else train_data
    if train_images is not None:
        count = checks.count(train_images, "train_images", minimum=1)
        x, y = x[:count], y[:count]
    soft = getattr(y, "ndim", 1) == 2
    if temperature is not None and not soft:
        y = keras.utils.to_categorical(y, int(model.output_shape[-1])).astype("float32")
        soft = True
    steps = -(-len(x) // recipe.batch_size)

    def compile_fn(m):
        if soft:
            loss = distillation_loss(temperature or 1.0)
            metric = keras.metrics.CategoricalAccuracy(name="accuracy")
        else:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            metric = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        m.compile(optimizer=optimizer(recipe, steps), loss=loss, metrics=[metric])

    settings = augmentations.parse(recipe.augmentation)

    def batches(x, y, batch_size, seed, epoch):
        return augmentations.training_dataset(x, y, batch_size, settings, seed, epoch)

    recipe_identity = {"recipe": dataclasses.asdict(recipe), "temperature": temperature, **(identity or {})}
    recipe_identity["recipe"]["drop_epochs"] = list(recipe.drop_epochs)
    return fine_tuning.fine_tune(model, dataset, recipe.epochs, checkpoint, batch_size=recipe.batch_size,
                                 learning_rate=recipe.learning_rate, seed=seed, verbose=verbose, log=log, what=what,
                                 identity=recipe_identity, train_data=(x, y), compile_fn=compile_fn, batches=batches)
