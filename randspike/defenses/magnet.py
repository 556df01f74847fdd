"""``magnet[:DROP_RATE,ae_batch_size=N]``: MagNet (Meng & Chen 2017) around the trained Dropout model, as the Random
Spiking paper configures it (appendix A.1 "Magnet"; REFERENCE section 9; :mod:`randspike.magnet`).

An *installed* defense on ``rs_dropout``: :meth:`~MagNetDefense.apply` keeps the classifier as it is and
:meth:`~MagNetDefense.train` trains the autoencoders (resumable per epoch), sets the detector thresholds on the last
5,000 training images at the false-positive rate DROP_RATE (default by data set: MNIST 0.001, Fashion-MNIST /
CIFAR-10 0.004) and writes

- at the output ``STEM.h5``: the composite ``x -> clip(reformer(x)) -> classifier`` (logits) with its JSON sidecar,
  what :meth:`~MagNetDefense.load` returns and a detector-unaware attacker differentiates;
- beside it, ``STEM.magnet/``: the reformer, the detectors' autoencoders, a copy of the classifier, the thresholds
  and settings (``magnet.json``) and the autoencoders' checkpoints; :meth:`~MagNetDefense.decider` returns the
  :class:`randspike.magnet.MagNet` (rejection included) built from it.

The data set (``dataset.name``) chooses structures, v_noise, epochs and detectors (:func:`randspike.magnet.magnet.
paper_setup`); ``epochs`` is the autoencoders' (paper: MNIST 100, others 400). The spec's ``ae_batch_size=N``
(default the published 256) is part of how the autoencoders are made, so it names the model
(``magnet:ae_batch_size=64``, label "MagNet (AE batch 64)"): at a reduced scale (a few thousand images) the published
batch gives too few Adam steps for the autoencoders to leave the mean-image plateau (docs/randspike.md). Settings:
``validation_size`` (5,000), ``v_noise``, ``train_images`` (the first N training images only); the source model's
network settings are accepted and ignored.
"""

import time

from hrs_tf import checks
from hrs_tf.defenses.registry import INSTALLED, Argument, Defense, parse, register, write_model
from hrs_tf.errors import ConfigError
from hrs_tf.evaluation import metrics
from randspike.defenses.schemes import COMMON_SETTINGS
from randspike.magnet import autoencoders, detectors, magnet

SOURCE = "rs_dropout"  # RS appendix A.1: "We use the trained Dropout model as the prediction model"
OWN_SETTINGS = ("validation_size", "v_noise", "train_images")
# the training settings of the schemes (an experiment passes them to every model it makes): not MagNet's, ignored
SOURCE_SETTINGS = tuple(k for k in COMMON_SETTINGS if k not in OWN_SETTINGS) + ("dropout_rate", "eval_repeats",
                                                                               "target_model")


@register
class MagNetDefense(Defense):
    name = "magnet"
    title = "MagNet"
    summary = "reformer autoencoder + reconstruction / divergence detectors (reject) around the Dropout model"
    reference = "Meng & Chen 2017 (MagNet); RS appendix A.1; REFERENCE section 9"
    make = INSTALLED
    arguments = (Argument("drop_rate", detectors.check_drop_rate, None, "false-positive rate of each detector on the "
                          "validation images (default: MNIST 0.001, others 0.004)", metavar="DROP_RATE"),
                 Argument("ae_batch_size", lambda text: checks.count(text, "ae_batch_size", minimum=1),
                          autoencoders.BATCH_SIZE,
                          f"the autoencoders' training batch (default the published {autoencoders.BATCH_SIZE})",
                          keyword_only=True, metavar="N"))
    default_epochs = 100  # MNIST's autoencoder epochs (Fashion-MNIST / CIFAR-10: 400)

    def label(self, args):
        label = "MagNet" if args["drop_rate"] is None else f"MagNet {args['drop_rate']:g}"
        batch = args["ae_batch_size"]
        return label if batch == autoencoders.BATCH_SIZE else f"{label} (AE batch {batch})"

    def source(self, args):
        return parse(SOURCE)

    def apply(self, args, model, seed=None):
        """MagNet leaves the classifier as it is (its autoencoders are trained by :meth:`train`)."""
        return model

    def train(self, args, dataset, output, *, epochs, seed=0, verbose=2, log=print, source_model=None, siblings=None,
              **settings):
        """Trains MagNet around ``source_model`` and writes the composite at ``output`` and the folder beside it."""
        if source_model is None:
            raise ConfigError(f"defense {self.name!r} is installed on a trained {SOURCE} model; give its source model")
        if not str(output).endswith(".h5"):
            raise ConfigError(f"output {output!r} must end in .h5")
        unknown = set(settings) - set(OWN_SETTINGS) - set(SOURCE_SETTINGS)
        if unknown:
            raise ConfigError(f"defense {self.name!r} does not take the setting(s) {', '.join(sorted(unknown))}")
        started = time.time()
        x_train = dataset.x_train
        if settings.get("train_images") is not None:
            x_train = x_train[:checks.count(settings["train_images"], "train_images", minimum=2)]
        own = {"validation_size": settings.get("validation_size"), "batch_size": args["ae_batch_size"],
               "v_noise": settings.get("v_noise")}
        own = {k: v for k, v in own.items() if v is not None}
        defense, record = magnet.train_magnet(source_model, x_train, magnet.folder_of(output), dataset_name=dataset.name,
                                              epochs=epochs, seed=seed, drop_rate=args["drop_rate"], verbose=verbose,
                                              log=log, **own)
        rejected = defense.rejected(dataset.x_test)
        record = dict(record, folder=magnet.folder_of(output), source=SOURCE,
                      test_rejection_rate=float(rejected.mean()),
                      test_accuracy_single=float((defense.labels(dataset.x_test, rule="single") == dataset.y_test).mean()),
                      composite_accuracy=metrics.accuracy(defense.model, dataset.x_test, dataset.y_test),
                      seconds=round(time.time() - started, 1))
        log(f"MagNet: {record['test_rejection_rate']:.2%} of the clean test images rejected, accuracy (single "
            f"prediction, a rejection an error) {record['test_accuracy_single']:.2%}")
        write_model(defense.model, record, output)

    def decider(self, args, path):
        """The :class:`randspike.magnet.magnet.MagNet` of the model written at ``path``."""
        return magnet.load_magnet(path)

