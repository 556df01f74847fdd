"""The training-recipe flags every Random Spiking tool shares (``train_rs``, ``train_fleet``, ``reproduce_rs_schemes``,
``reproduce_rs``): the network (``--arch``, ``--depth``, ``--width``), ``--augmentation``, ``--train_images`` and,
where the tool's ``--batch_size`` is the training one, ``--batch_size`` / ``--learning_rate``. Unset flags leave the
paper's recipe (Table 7) in force; values are checked where the recipe is built (:func:`randspike.training.recipe_for`,
:func:`randspike.architectures.check_arch`)."""

from absl import flags

RECIPE_FLAGS = ("arch", "depth", "width", "augmentation", "train_images")
OPTIMISER_FLAGS = ("batch_size", "learning_rate")  # after the others: studies compare their stored settings in order


def define(whose="every scheme", train_images_help=None, optimiser=True, any_arch=False, flag_values=flags.FLAGS):
    """Defines the recipe flags; ``whose`` names what they set (e.g. "every fleet model"); ``optimiser=False`` leaves
    ``--batch_size`` / ``--learning_rate`` to the tool (an evaluation batch size, say); ``any_arch``: ``--arch`` may
    name any registered architecture (a fleet of a core defense), not only the Random Spiking networks."""
    from randspike import architectures

    v = dict(flag_values=flag_values)
    arch_help = f"Network of {whose} (default: the data set's, rs_mnist on MNIST, wrn otherwise)."
    if any_arch:
        flags.DEFINE_string("arch", None, arch_help, **v)
    else:
        flags.DEFINE_enum("arch", None, list(architectures.ARCHITECTURES), arch_help, **v)
    flags.DEFINE_integer("depth", None, "WRN depth, (depth - 4) divisible by 6 (paper 28).", **v)
    flags.DEFINE_integer("width", None, "WRN widening factor (paper 10).", **v)
    flags.DEFINE_string("augmentation", None, f"Augmentation of {whose}: none, mnist, fashion_mnist, cifar10 or settings "
                        "such as rotation=10,shift=4 (default: the data set's).", **v)
    flags.DEFINE_integer("train_images", None, train_images_help or "Train on the first N training images only (a quick "
                         "run).", **v)
    if optimiser:
        flags.DEFINE_integer("batch_size", None, f"Training mini-batch of {whose} (paper 128).", **v)
        flags.DEFINE_float("learning_rate", None, f"Initial SGD learning rate of {whose} (paper 0.01 MNIST CNN, 0.1 "
                           "WRN).", **v)


def settings(values, optimiser=True):
    """The recipe settings given on the command line, {name: value} (``values``: FLAGS), in a fixed order."""
    names = RECIPE_FLAGS + (OPTIMISER_FLAGS if optimiser else ())
    return {name: values[name].value for name in names if values[name].value is not None}
