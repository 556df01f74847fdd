"""MagNet (Meng & Chen 2017) as the Random Spiking paper uses it (appendix A.1 "Magnet"; REFERENCE section 9): a
reformer autoencoder, detectors with thresholds, and the trained Dropout model as classifier.

**Decision** (:meth:`MagNet.labels`): an image is rejected (:data:`randspike.decision.REJECTED`) if any detector's
score is above its threshold, else it is the classifier's decision (single / mc / vote,
:func:`randspike.decision.labels`) on the reformed image ``clip(reformer(x), 0, 1)``.

**Attacking it.** :attr:`MagNet.model` is the composite Keras model ``x -> clip(reformer(x)) -> classifier``
(logits; standard layers only, savable in safe mode), the model a detector-unaware white-box attack differentiates.
The detector-aware attack of the Random Spiking repo (its ``l2_attack_multi.py``: C&W-L2 plus ``10 * sum_i max(0,
score_i - threshold_i)``, an example counting only if no detector fires; after Carlini & Wagner 2017, "MagNet and
'Efficient defenses ...' are not robust") needs the detector scores, which a ``loss_fn(labels, logits)`` cannot see.
So :meth:`MagNet.attack_model` appends a *rejection logit* to the composite's logits
(:class:`randspike.layers.MagNetRejection`): its argmax is MagNet's decision, the C&W success test
(target with margin kappa) fails on rejected images, and a C&W / margin objective gets the gradient of the weighted
hinge where a detector fires. ``hrs_tf`` attacks run on it unchanged::

    adv = cw_l2(magnet.attack_model(), x, targets, targeted=True, confidence=k)          # C&W objective
    adv = pgd(magnet.attack_model(), x, ..., loss_fn=magnet.loss_fn(targeted=True))      # any base loss + hinge

:func:`detector_penalty_loss` (``magnet.loss_fn``) is the loss_fn of the second form: a base loss on the C class
logits plus (targeted) / minus (untargeted) the weighted hinge read back from the rejection column; it is zero
below every threshold. Untargeted attacks: the attacks' own success test counts a rejection as a success (a
label other than y); score their output with :func:`randspike.decision.attack_succeeded` on MagNet's labels.

**Files.** :meth:`MagNet.save` writes one folder: ``magnet.json`` (format, reformer, detectors with kinds,
settings and thresholds, the training record), ``classifier.h5`` (a copy of the source model) and one ``NAME.h5``
per autoencoder; training checkpoints ``NAME.checkpoint.h5`` stay there too. The defense ``magnet`` puts that
folder beside its output ``.h5`` (the composite) as ``STEM.magnet/`` (:func:`folder_of`); :func:`load_magnet`
takes either.
"""

import contextlib
import os

import keras
import numpy as np
import tensorflow as tf

from hrs_tf import checks, fileio
from hrs_tf.attacks import losses
from hrs_tf.errors import ConfigError, ModelError
from hrs_tf.layers import stochastic
from hrs_tf.models import serialization
from randspike import decision
from randspike.magnet import autoencoders as ae
from randspike.magnet import detectors as det

FORMAT = "randspike.magnet/1"
FOLDER_SUFFIX = ".magnet"
SETTINGS_FILE = "magnet.json"
CLASSIFIER_FILE = "classifier.h5"
VALIDATION_SIZE = 5000  # the last 5,000 training images: held out from the autoencoders, used for the thresholds
DATASETS = ("mnist", "fashion_mnist", "cifar10")


def paper_setup(dataset_name):
    """The RS paper's MagNet for ``dataset_name`` (appendix A.1; the RS repo's ``train_defense.py``): autoencoders
    ``{name: structure}`` (each trained separately), the reformer's name, the detectors (without thresholds),
    v_noise, epochs and drop rate.

    MNIST: reformer I, detector I / L2, detector II / L1. Fashion-MNIST and CIFAR-10: reformer II, detector II / L1,
    divergence detectors at T = 10 and 40 (each with its own prober autoencoder of structure II)."""
    checks.choice(dataset_name, "MagNet data set", DATASETS)
    if dataset_name == "mnist":
        autoencoders = {"reformer": ae.STRUCTURE_I, "detector_I": ae.STRUCTURE_I, "detector_II": ae.STRUCTURE_II}
        detectors = [{"name": "detector_I_L2", "kind": det.RECONSTRUCTION, "autoencoder": "detector_I", "p": 2},
                     {"name": "detector_II_L1", "kind": det.RECONSTRUCTION, "autoencoder": "detector_II", "p": 1}]
    else:
        autoencoders = {"reformer": ae.STRUCTURE_II, "detector_II": ae.STRUCTURE_II}
        detectors = [{"name": "detector_II_L1", "kind": det.RECONSTRUCTION, "autoencoder": "detector_II", "p": 1}]
        for t in det.TEMPERATURES:
            autoencoders[f"prober_T{t:g}"] = ae.STRUCTURE_II
            detectors.append({"name": f"JSD_T{t:g}", "kind": det.DIVERGENCE, "prober": f"prober_T{t:g}",
                              "reconstructor": None, "temperature": t})
    return {"autoencoders": autoencoders, "reformer": "reformer", "detectors": detectors,
            "v_noise": ae.V_NOISE[dataset_name], "epochs": ae.EPOCHS[dataset_name],
            "drop_rate": det.DROP_RATE[dataset_name]}


def build_composite(classifier, reformer, name="magnet"):
    """The Keras model ``x -> clip(reformer(x), 0, 1) -> classifier`` (logits), standard layers only."""
    inputs = keras.Input(shape=tuple(reformer.input_shape[1:]), name="image")
    reformed = keras.layers.ReLU(max_value=1.0, name="clip_reformed")(reformer(inputs))
    return keras.Model(inputs, classifier(reformed), name=name)


def detector_penalty_loss(targeted, base=losses.margin):
    """A ``loss_fn(labels, logits)`` (:mod:`hrs_tf.attacks.losses` convention) for MagNet's attack model (C + 1
    outputs): ``base(labels, Z)`` on the C class logits plus (targeted: the loss is decreased) or minus
    (untargeted: increased) the weighted detector hinge ``w sum_i max(0, score_i - threshold_i)``, read back from
    the rejection column (zero below every threshold; its gradient is the hinge's)."""
    sign = 1.0 if targeted else -1.0

    def loss(labels, logits):
        z, rejection = logits[:, :-1], logits[:, -1]
        top = tf.reduce_max(z, axis=-1)
        weighted_hinge = tf.where(rejection > top, rejection - top - det.REJECTION_MARGIN, tf.zeros_like(top))
        return base(labels, z) + sign * weighted_hinge

    loss.__qualname__ = f"magnet_detector_penalty_{getattr(base, '__name__', 'loss')}_{'targeted' if targeted else 'untargeted'}"
    return loss


class MagNet(decision.Decider):
    """MagNet's decision around a classifier (module docstring). ``detectors``: :class:`.detectors.Detector`\\ s,
    thresholds set (or set later with :meth:`set_thresholds`)."""

    title = "MagNet"

    def __init__(self, classifier, reformer, detectors, name="magnet"):
        self.classifier, self.reformer = classifier, reformer
        self.detectors = list(detectors)
        if not self.detectors:
            raise ConfigError("MagNet needs at least one detector")
        names = [d.name for d in self.detectors]
        if len(set(names)) != len(names):
            raise ConfigError(f"MagNet detector names repeat: {', '.join(names)}")
        if tuple(reformer.input_shape[1:]) != tuple(reformer.output_shape[1:]):
            raise ModelError(f"reformer {reformer.name!r} maps {reformer.input_shape[1:]} to {reformer.output_shape[1:]}")
        self.model = build_composite(classifier, reformer, name)
        self._attack_models = {}

    @property
    def num_classes(self):
        return int(self.classifier.output_shape[-1])

    @property
    def thresholds(self):
        return {d.name: d.threshold for d in self.detectors}

    # -- decision ----------------------------------------------------------------------------------------------
    def reform(self, x, batch_size=decision.BATCH_SIZE):
        """``clip(reformer(x), 0, 1)`` of the images ``x`` (numpy)."""
        x = np.asarray(x, np.float32)
        return np.concatenate([np.asarray(det.heal(self.reformer, tf.constant(x[a:a + batch_size])))
                               for a in range(0, len(x), batch_size)]) if len(x) else x

    def scores(self, x, batch_size=decision.BATCH_SIZE):
        """``{detector name: scores}`` of the images ``x``."""
        return {d.name: d.score(x, batch_size) for d in self.detectors}

    def rejected(self, x, batch_size=decision.BATCH_SIZE):
        """Per image: does any detector's score exceed its threshold?"""
        out = np.zeros(len(x), bool)
        for d in self.detectors:
            out |= d.rejects(x, batch_size)
        return out

    def labels(self, x, rule=decision.MC_AVERAGE, passes=decision.PASSES, batch_size=decision.BATCH_SIZE,
               per_image=False):
        """MagNet's labels: :data:`randspike.decision.REJECTED` for a rejected image, else the classifier's label
        under ``rule`` on the reformed image. Under ``single`` every stochastic layer is off, the divergence
        detectors' classifier passes included; under ``mc`` / ``vote`` each detector score is one stochastic pass
        (as the published code scores with the deployed classifier)."""
        rule = decision.check_rule(rule)
        x = np.asarray(x, np.float32)
        with contextlib.ExitStack() as stack:
            if rule == decision.SINGLE:  # randomness off everywhere, also in the divergence detectors' classifier
                stack.enter_context(stochastic.randomness(self.model, stochastic.OFF))
            rejected = self.rejected(x, batch_size)
            out = decision.labels(self.classifier, self.reform(x, batch_size), rule=rule, passes=passes,
                                  batch_size=batch_size, per_image=per_image)
        return np.where(rejected, decision.REJECTED, out).astype(np.int64)

    def set_thresholds(self, x_validation, drop_rate, batch_size=det.SCORE_BATCH):
        """Sets every detector's threshold on the clean ``x_validation`` at false-positive rate ``drop_rate``;
        returns ``{name: threshold}``."""
        drop_rate = det.check_drop_rate(drop_rate)
        for d in self.detectors:
            d.set_threshold(x_validation, drop_rate, batch_size)
        self._attack_models.clear()
        return self.thresholds

    # -- attacking it --------------------------------------------------------------------------------------------
    def attack_model(self, penalty_weight=det.PENALTY_WEIGHT):
        """The composite with MagNet's rejection logit appended (C + 1 outputs; module docstring), built once per
        weight ``w`` of the detector hinge."""
        missing = [d.name for d in self.detectors if d.threshold is None]
        if missing:
            raise ConfigError(f"MagNet detectors {', '.join(missing)} have no threshold yet")
        penalty_weight = checks.positive(penalty_weight, "penalty_weight")
        if penalty_weight not in self._attack_models:
            clip = keras.layers.ReLU(max_value=1.0)
            inputs = keras.Input(shape=tuple(self.reformer.input_shape[1:]), name="image")
            logits = self.classifier(clip(self.reformer(inputs)))
            pairs, kinds, parameters = [], [], []
            for d in self.detectors:
                if d.kind == det.RECONSTRUCTION:
                    pairs += [inputs, d.autoencoder(inputs)]
                    parameters.append(d.p)
                else:
                    reconstructed = inputs if d.reconstructor is None else clip(d.reconstructor(inputs))
                    pairs += [self.classifier(reconstructed), self.classifier(clip(d.prober(inputs)))]
                    parameters.append(d.temperature)
                kinds.append(d.kind)
            from randspike.layers.magnet_rejection import MagNetRejection  # the layer imports detectors

            rejection = MagNetRejection(kinds, parameters, [d.threshold for d in self.detectors], penalty_weight,
                                        name="rejection")
            self._attack_models[penalty_weight] = keras.Model(inputs, rejection([logits] + pairs),
                                                              name=f"{self.model.name}_attack")
        return self._attack_models[penalty_weight]

    def loss_fn(self, targeted, base=losses.margin):
        """:func:`detector_penalty_loss` for :meth:`attack_model`."""
        return detector_penalty_loss(targeted, base)

    # -- files ----------------------------------------------------------------------------------------------------
    def autoencoders(self):
        """``{name: model}`` of every autoencoder (reformer, detectors', probers'), each once."""
        found = {self.reformer.name: self.reformer}
        for d in self.detectors:
            for model in (getattr(d, "autoencoder", None), getattr(d, "prober", None), getattr(d, "reconstructor", None)):
                if model is not None:
                    if found.get(model.name, model) is not model:
                        raise ConfigError(f"two different MagNet autoencoders are called {model.name!r}")
                    found[model.name] = model
        return found

    def save(self, folder, record=None):
        """Writes the folder (module docstring); ``record``: training settings and history for ``magnet.json``."""
        missing = [d.name for d in self.detectors if d.threshold is None]
        if missing:
            raise ConfigError(f"MagNet detectors {', '.join(missing)} have no threshold yet; set them before saving")
        os.makedirs(folder, exist_ok=True)
        serialization.save_model(self.classifier, os.path.join(folder, CLASSIFIER_FILE))
        models = self.autoencoders()
        for name, model in models.items():
            serialization.save_model(model, os.path.join(folder, f"{name}.h5"))
        settings = {"format": FORMAT, "classifier": CLASSIFIER_FILE, "reformer": self.reformer.name,
                    "autoencoders": {name: f"{name}.h5" for name in models},
                    "detectors": [d.describe() for d in self.detectors], "input_shape": list(self.reformer.input_shape[1:]),
                    "num_classes": self.num_classes, "record": record or {}}
        fileio.write_json(os.path.join(folder, SETTINGS_FILE), settings)  # last: its presence marks a whole folder


def folder_of(path):
    """The MagNet folder of ``path``: the folder itself, or ``STEM.magnet`` beside an output ``STEM.h5``."""
    path = os.fspath(path)
    return os.path.splitext(path)[0] + FOLDER_SUFFIX if path.endswith(".h5") else path


def load_magnet(path):
    """The :class:`MagNet` saved in the folder of ``path`` (the folder, or the defense's output ``.h5``)."""
    folder = folder_of(path)
    settings_path = os.path.join(folder, SETTINGS_FILE)
    if not os.path.isfile(settings_path):
        raise ModelError(f"{folder!r} holds no MagNet ({SETTINGS_FILE} missing: not trained, or training did not finish)")
    settings = fileio.read_result(settings_path)
    if settings.get("format") != FORMAT:
        raise ModelError(f"{settings_path!r} is not a MagNet of this project (format {settings.get('format')!r})")
    classifier = serialization.load_model(os.path.join(folder, settings["classifier"]))
    models = {name: serialization.load_model(os.path.join(folder, file))
              for name, file in settings["autoencoders"].items()}
    detectors = []
    for d in settings["detectors"]:
        if d["kind"] == det.RECONSTRUCTION:
            detectors.append(det.ReconstructionDetector(d["name"], models[d["autoencoder"]], d["p"], d["threshold"]))
        else:
            reconstructor = None if d.get("reconstructor") is None else models[d["reconstructor"]]
            detectors.append(det.DivergenceDetector(d["name"], classifier, models[d["prober"]], d["temperature"],
                                                    reconstructor, d["threshold"]))
    return MagNet(classifier, models[settings["reformer"]], detectors)


def build_detectors(specs, models, classifier):
    """Detector objects from ``specs`` (dicts as :func:`paper_setup` gives) and ``{name: autoencoder}``."""
    built = []
    for spec in specs:
        kind = checks.choice(spec.get("kind"), f"kind of MagNet detector {spec.get('name')!r}", det.KINDS)
        try:
            if kind == det.RECONSTRUCTION:
                built.append(det.ReconstructionDetector(spec["name"], models[spec["autoencoder"]], spec["p"],
                                                        spec.get("threshold")))
            else:
                reconstructor = spec.get("reconstructor")
                built.append(det.DivergenceDetector(spec["name"], classifier, models[spec["prober"]],
                                                    spec["temperature"],
                                                    None if reconstructor is None else models[reconstructor],
                                                    spec.get("threshold")))
        except KeyError as e:
            raise ConfigError(f"MagNet detector {spec.get('name')!r} names no known autoencoder / setting {e}") from None
    return built


def split_validation(x_train, validation_size=VALIDATION_SIZE):
    """``(autoencoder training images, validation images)``: the last ``validation_size`` are held out."""
    validation_size = checks.count(validation_size, "validation_size", minimum=1)
    if validation_size >= len(x_train):
        raise ConfigError(f"validation_size={validation_size} leaves none of the {len(x_train)} training images to "
                          "train the autoencoders")
    return x_train[:-validation_size], x_train[-validation_size:]


def unlearned_autoencoders(histories, x_fit, x_validation):
    """``(mean-image MSE, {name: final validation MSE})`` of the autoencoders whose last validation MSE is no better
    than reconstructing every validation image as the mean training image: such an autoencoder has not left the
    plateau its sigmoid outputs start on (a reformer that sends every image to about the same output, so the
    composite predicts about one class), and a MagNet built on it is not MagNet. Measured here: the MNIST reformer on
    5,000 images at batch 256 stays on it for about 110 epochs (2,200 steps), then reaches 0.005 by epoch 200."""
    x_fit, x_validation = np.asarray(x_fit, np.float64), np.asarray(x_validation, np.float64)
    baseline = float(np.mean(np.square(x_validation - x_fit.mean(axis=0))))
    return baseline, {name: history[-1]["validation_mse"] for name, history in histories.items()
                      if history and history[-1].get("validation_mse", 0.0) >= baseline}


def autoencoder_seed(seed, index):
    return int(np.random.SeedSequence([int(seed), 7_919, int(index)]).generate_state(1)[0] % (2**31 - 1))


def train_magnet(classifier, x_train, folder, *, dataset_name, epochs=None, seed=0, drop_rate=None,
                 validation_size=VALIDATION_SIZE, batch_size=ae.BATCH_SIZE, v_noise=None, setup=None, verbose=0,
                 log=print):
    """Trains MagNet around ``classifier`` and saves it in ``folder``; returns ``(magnet, record)``.

    The autoencoders of ``setup`` (default :func:`paper_setup` of ``dataset_name``) are trained one after the other
    on ``x_train`` without its last ``validation_size`` images, each resumable from ``folder/NAME.checkpoint.h5``
    (seeded by ``seed`` and its position); then every threshold is set on those held-out images at ``drop_rate``.
    ``epochs``, ``v_noise``, ``drop_rate`` default to the setup's (the paper's) values.
    """
    setup = dict(paper_setup(dataset_name) if setup is None else setup)
    epochs = checks.count(setup["epochs"] if epochs is None else epochs, "epochs", minimum=1)
    v_noise = checks.nonnegative(setup["v_noise"] if v_noise is None else v_noise, "v_noise")
    drop_rate = det.check_drop_rate(setup["drop_rate"] if drop_rate is None else drop_rate)
    structures = {name: ae.check_structure(s) for name, s in setup["autoencoders"].items()}
    if setup["reformer"] not in structures:
        raise ConfigError(f"MagNet reformer {setup['reformer']!r} is not one of the autoencoders {', '.join(structures)}")
    x_train = np.asarray(x_train, np.float32)
    x_fit, x_validation = split_validation(x_train, validation_size)
    if int(np.floor(len(x_validation) * drop_rate + 1e-9)) < 1:  # fail before training, not after
        det.threshold_for(np.zeros(len(x_validation)), drop_rate)
    os.makedirs(folder, exist_ok=True)
    models, histories = {}, {}
    for index, (name, structure) in enumerate(structures.items()):
        keras.utils.set_random_seed(autoencoder_seed(seed, index))
        models[name] = ae.build_autoencoder(x_train.shape[1:], structure, name=name)
        histories[name] = ae.train_autoencoder(
            models[name], x_fit, epochs, os.path.join(folder, f"{name}.checkpoint.h5"), v_noise,
            x_validation=x_validation, batch_size=batch_size, seed=autoencoder_seed(seed, index), verbose=verbose,
            log=log, what=f"MagNet autoencoder {name}")
    baseline, unlearned = unlearned_autoencoders(histories, x_fit, x_validation)
    if unlearned:
        names = ", ".join(f"{n} (validation MSE {v:.4f})" for n, v in unlearned.items())
        log(f"WARNING: MagNet autoencoder(s) {names} "
            f"no better than the mean training image ({baseline:.4f}) after {epochs} epochs on {len(x_fit)} images: "
            "not a working MagNet; train longer (more epochs or images)")
    magnet = MagNet(classifier, models[setup["reformer"]], build_detectors(setup["detectors"], models, classifier))
    thresholds = magnet.set_thresholds(x_validation, drop_rate)
    log("MagNet thresholds: " + ", ".join(f"{k} {v:.6g}" for k, v in thresholds.items()))
    record = {"kind": "magnet", "dataset": dataset_name, "epochs": epochs, "seed": int(seed), "v_noise": v_noise,
              "drop_rate": drop_rate, "validation_size": len(x_validation), "autoencoder_images": len(x_fit),
              "batch_size": int(batch_size),
              "structures": {name: list(s) for name, s in structures.items()}, "thresholds": thresholds,
              "autoencoder_history": histories, "mean_image_mse": baseline,
              "unlearned_autoencoders": sorted(unlearned)}
    magnet.save(folder, record)
    return magnet, record
