"""``gaussian[:INIT,INNER]``: Gaussian noise on the input ("init") and before every later conv ("inner"), in
training and at test (random self-ensemble, Liu et al. 2018; HRS appendix C.2), trained with the reference
recipe and the architecture's dropout."""

from hrs_tf import checks, models, training
from hrs_tf.defenses.registry import TRAINED, Argument, Defense, parse, register
from hrs_tf.layers.gaussian_noise import GaussianNoiseInjection
from hrs_tf.models import surgery

# HRS appendix C.2: (init, inner) noise deviations; Liu et al.'s values on MNIST, 10x smaller on CIFAR-10.
DEFAULTS = {"mnist": (0.2, 0.1), "fashion_mnist": (0.2, 0.1), "cifar10": (0.02, 0.01)}
# HRS appendix C.5: the (init, inner) ranges of the DES study.
STRENGTHS = {
    "mnist": ((0.1, 0.05), (0.2, 0.1), (0.325, 0.1625)),
    "fashion_mnist": ((0.1, 0.05), (0.2, 0.1), (0.325, 0.1625)),
    "cifar10": ((0.01, 0.005), (0.02, 0.01), (0.06, 0.03), (0.11, 0.055)),
}
NOISE_BEFORE = ("conv1", "conv2", "conv3", "conv4")


def build_gaussian_noise_model(arch, init_std, inner_std, dropout_rate=None, seed=None, name=None):
    """The base CNN of ``arch`` with Gaussian noise on the input of every conv layer: ``init_std`` before
    conv1 (on the image), ``inner_std`` before conv2, conv3 and conv4, with the architecture's dropout after
    FC1 for training. Fresh weights (those of ``build_base_model`` under the same seed)."""
    arch = models.get_architecture(arch)
    init_std, inner_std = checks.nonnegative(init_std, "init_std"), checks.nonnegative(inner_std, "inner_std")
    base = models.build_base_model(arch, dropout_rate=dropout_rate)

    def edit(item):
        if item.name not in NOISE_BEFORE:
            return [item]
        k = NOISE_BEFORE.index(item.name)
        noise = GaussianNoiseInjection(init_std if k == 0 else inner_std, seed=None if seed is None else int(seed) * 10 + k,
                                       name="noise_init" if k == 0 else f"noise_{item.name}")
        return [noise, item]

    return surgery.rebuild(base, edit, name or f"gaussian_{arch.name}")


@register
class GaussianNoiseDefense(Defense):
    name = "gaussian"
    title = "Gaussian"
    summary = "Gaussian noise on the input and before every later conv, in training and at test"
    reference = "Liu et al. 2018 (random self-ensemble); HRS appendix C.2; REFERENCE section 3"
    make = TRAINED
    arguments = (Argument("init_std", lambda text: checks.nonnegative(text, "init_std"), None,
                          "noise deviation on the input (default 0.2 MNIST, 0.02 CIFAR-10)", metavar="INIT"),
                 Argument("inner_std", lambda text: checks.nonnegative(text, "inner_std"), None,
                          "noise deviation before conv2..conv4 (default 0.1 MNIST, 0.01 CIFAR-10)", metavar="INNER"))
    default_epochs = 40
    epoch_checkpoints = True
    compared_in = {"hrs_paper": ("",)}

    def label(self, args):
        if args["init_std"] is None and args["inner_std"] is None:
            return "Gaussian"
        shown = ["default" if v is None else f"{v:g}" for v in (args["init_std"], args["inner_std"])]
        return f"Gaussian ({shown[0]}, {shown[1]})"

    def deviations(self, args, dataset_name):
        default_init, default_inner = DEFAULTS[dataset_name]
        return (default_init if args["init_std"] is None else args["init_std"],
                default_inner if args["inner_std"] is None else args["inner_std"])

    def fit(self, args, dataset, *, epochs, seed=0, verbose=2, log=print, source_model=None, **settings):
        init_std, inner_std = self.deviations(args, dataset.name)

        def build(architecture, dropout_rate=None):
            return build_gaussian_noise_model(architecture, init_std, inner_std, dropout_rate, seed=seed)

        model, record = training.train_base_model(dataset, epochs=epochs, seed=seed, verbose=verbose, build_model=build,
                                                  log=log, identity={"init_std": init_std, "inner_std": inner_std},
                                                  **settings)
        return model, dict(record, init_std=init_std, inner_std=inner_std)

    def strength_sweep(self, dataset_name, specs):
        return [parse(f"{self.name}:{init:g},{inner:g}") for init, inner in STRENGTHS.get(dataset_name, ())]
