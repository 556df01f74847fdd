"""The Random Spiking paper's trained schemes (Table 2; appendix A.1; REFERENCE sections 4 and 9), registered defenses:

=================  ==================================================================================
``rs_standard``    Standard: the RS MNIST CNN / WRN, no randomness
``rs_dropout``     Dropout: dropout after FC1 (0.5; WRN: 0.1 in every block), kept on at test time
``distillation``   Distillation: the Dropout network trained at T = 100 on a teacher's soft labels, deployed at T = 1
``rs1``            RS-1: a Random Spiking layer (p = 0.8) after the first conv + ReLU (WRN: on the stem output)
``rsd1``           RS-1-Dropout: RS-1 and Dropout
``rs1_adv``        RS-1-Adv: RS-1 retrained with C&W-L2 examples crafted against a trained RS-1 model added
``dropout_adv``    Dropout-Adv: Dropout retrained with C&W-L2 examples crafted against a trained Dropout model
=================  ==================================================================================

(MagNet and region-based classification are made from a trained ``rs_dropout`` model: :mod:`.magnet`, :mod:`.region`.)

Each is trained from scratch with the paper's recipe (:mod:`randspike.training`), resumable per epoch (a checkpoint
beside the output). Settings (the tool's flags): ``arch`` (``rs_mnist`` or ``wrn``; default by data set), ``depth`` /
``width`` (WRN), ``augmentation``, ``batch_size``, ``learning_rate``, ``train_images``; adversarial schemes also
``target_model`` (a trained target; default: a sibling in the same store, else trained first). How the adversarial
examples are made is part of the adversarial schemes' specs (``rs1_adv:per_confidence=300,cw_iterations=100``).
"""

import os

import keras
import numpy as np

from hrs_tf import checks, training as core_training
from hrs_tf.defenses.registry import TRAINED, Argument, Defense, parse, register, write_model
from hrs_tf.errors import ConfigError
from hrs_tf.evaluation import metrics
from hrs_tf.layers import stochastic
from hrs_tf.models import count_params
from hrs_tf.training import fine_tuning
from randspike import architectures, decision, training
from randspike.layers.random_spiking import keep_probability

COMMON_SETTINGS = ("arch", "depth", "width", "augmentation", "batch_size", "learning_rate", "train_images")
KEEP = Argument("keep", keep_probability, architectures.KEEP_PROB,
                "probability of keeping an element in the Random Spiking layer (paper p = 0.8)", metavar="P")


class Scheme(Defense):
    """A scheme trained from scratch: its network options (:attr:`dropout`, :attr:`spiking`) and the paper's recipe.

    :attr:`rules`: the decision rules Table 2 can report for it (the first is the paper's row)."""

    make = TRAINED
    default_epochs = 50  # Table 7, MNIST (WRN: 200, given by the tool from the recipe)
    dropout = False
    spiking = False
    settings_taken = COMMON_SETTINGS

    @property
    def rules(self):
        return (decision.MC_AVERAGE, decision.VOTING, decision.SINGLE) if (self.dropout or self.spiking) else \
            (decision.SINGLE,)

    def label(self, args):
        keep = args.get("keep")
        if keep is not None and keep != architectures.KEEP_PROB:
            return f"{self.title} (p={keep:g})"
        return self.title

    def model_shape(self, args, dataset, settings):
        arch = architectures.check_arch(settings.get("arch") or architectures.DEFAULT_ARCHITECTURE[dataset.name])
        depth = checks.count(settings.get("depth") or 28, "depth", minimum=10)
        width = checks.count(settings.get("width") or 10, "width", minimum=1)
        return architectures.ModelShape(arch, depth, width, self.dropout, args.get("keep") if self.spiking else None)

    def check_settings(self, settings):
        unknown = set(k for k, v in settings.items() if v is not None) - set(self.settings_taken) - {"eval_repeats"}
        if unknown:
            raise ConfigError(f"scheme {self.name!r} does not take the setting(s) {', '.join(sorted(unknown))}")

    def recipe(self, shape, dataset, epochs, settings):
        return training.recipe_for(shape.arch, dataset.name, epochs, settings.get("batch_size"),
                                   settings.get("learning_rate"), settings.get("augmentation"))

    def build(self, shape, dataset, seed):
        keras.utils.set_random_seed(int(seed))
        return architectures.build_model(shape, dataset.input_shape, seed=seed, name=f"{self.name}_{dataset.name}")

    def training_data(self, args, dataset, output, *, epochs, seed, settings, siblings, verbose, log):
        """(x, y) the scheme trains on, and a record of how they were made (adversarial schemes add examples)."""
        return (dataset.x_train, dataset.y_train), {}

    def train(self, args, dataset, output, *, epochs, seed=0, verbose=2, log=print, source_model=None, siblings=None,
              **settings):
        self.check_settings(settings)
        shape = self.model_shape(args, dataset, settings)
        recipe = self.recipe(shape, dataset, epochs, settings)
        train_data, data_record = self.training_data(args, dataset, output, epochs=epochs, seed=seed, settings=settings,
                                                     siblings=siblings or {}, verbose=verbose, log=log)
        if settings.get("train_images") is not None:  # a quick run: the first N images (adversarial ones appended)
            count = checks.count(settings["train_images"], "train_images", minimum=1)
            extra = data_record.get("adversarial_examples", {}).get("kept", 0) if data_record else 0
            x, y = train_data
            train_data = (np.concatenate([x[:count], x[len(x) - extra:]]) if extra else x[:count],
                          np.concatenate([y[:count], y[len(y) - extra:]]) if extra else y[:count])
        log(f"{self.title} on {dataset.name}: {shape.describe()}; {recipe.describe()}; "
            f"{len(train_data[0])} training images")
        model, history, extra = self.fit_model(args, dataset, output, shape, recipe, train_data, seed=seed,
                                               settings=settings, verbose=verbose, log=log)
        record = {"kind": "random_spiking_scheme", "scheme": self.title, "dataset": dataset.name,
                  "model": shape.describe(), "arch": shape.arch, "depth": shape.depth, "width": shape.width,
                  "keep_prob": shape.keep_prob, "dropout": shape.dropout, "recipe": recipe.describe(),
                  "epochs": recipe.epochs, "seed": int(seed), "train_images": len(train_data[0]), "history": history,
                  "num_params": count_params(model), **data_record, **extra,
                  "test_error_single": 1.0 - _single_accuracy(model, dataset), "versions": core_training.versions()}
        write_model(model, record, output)

    def fit_model(self, args, dataset, output, shape, recipe, train_data, *, seed, settings, verbose, log):
        model = self.build(shape, dataset, seed)
        history = training.train(model, dataset, recipe, fine_tuning.checkpoint_path(output), seed=seed,
                                 train_data=train_data, verbose=verbose, log=log, what=f"a {self.title} run",
                                 identity={"model": shape.describe()})
        return model, history, {}


def _single_accuracy(model, dataset):
    with stochastic.randomness(model, stochastic.OFF):
        return metrics.accuracy(model, dataset.x_test, dataset.y_test)


@register
class Standard(Scheme):
    name = "rs_standard"
    title = "Standard"
    summary = "the Random Spiking paper's network without randomness (RS MNIST CNN / WRN), its recipe"
    reference = "Random Spiking paper Table 2, Tables 6-7; REFERENCE section 4"


@register
class Dropout(Scheme):
    name = "rs_dropout"
    title = "Dropout"
    summary = "dropout after FC1 (0.5; WRN 0.1 per block) kept on at test time, the paper's recipe"
    reference = "Random Spiking paper Table 2, appendix A.1; REFERENCE section 4"
    dropout = True


@register
class RandomSpikingScheme(Scheme):
    name = "rs1"
    title = "RS-1"
    summary = "Random Spiking (keep p) after the first conv + ReLU (WRN: the stem), on at test time"
    reference = "Random Spiking paper section 4, appendix A.1; REFERENCE section 4"
    spiking = True
    arguments = (KEEP,)


@register
class RandomSpikingDropout(Scheme):
    name = "rsd1"
    title = "RS-1-Dropout"
    summary = "RS-1 and Dropout together"
    reference = "Random Spiking paper appendix A.1 (RSD-1); REFERENCE section 4"
    spiking = True
    dropout = True
    arguments = (KEEP,)


@register
class Distillation(Scheme):
    name = "distillation"
    title = "Distillation"
    summary = "the Dropout network: teacher at T, its soft labels, student at T, deployed at T = 1"
    reference = "Papernot et al. 2016 as configured by Carlini & Wagner; Random Spiking paper appendix A.1; REFERENCE section 9"
    dropout = True
    arguments = (Argument("temperature", lambda text: checks.positive(text, "temperature"), 100.0,
                          "distillation temperature T (paper 100)", metavar="T"),)

    def label(self, args):
        T = args["temperature"]
        return self.title if T == 100.0 else f"{self.title} (T={T:g})"

    def fit_model(self, args, dataset, output, shape, recipe, train_data, *, seed, settings, verbose, log):
        """C&W's ``train_distillation``: a 1-epoch model trained normally (T = 1, their ``train``'s default) is the
        start of both teacher and student (at T = 100 from random weights the loss stays at ln 10); the teacher
        trains at T; its soft labels softmax(z / T) on the training set (randomness off, as Keras ``predict`` in
        their code) train the student at T; the student's logits are deployed as they are (T = 1)."""
        import dataclasses

        T = float(args["temperature"])
        stem = os.path.splitext(output)[0]
        common = dict(seed=seed, verbose=verbose, log=log, identity={"model": shape.describe()})
        init = self.build(shape, dataset, seed)
        training.train(init, dataset, dataclasses.replace(recipe, epochs=1), stem + "_init.checkpoint.h5",
                       train_data=train_data, what="a distillation start model", **common)
        start = init.get_weights()
        teacher = self.build(shape, dataset, seed)
        teacher.set_weights(start)
        log(f"distillation teacher at T={T:g}")
        teacher_history = training.train(teacher, dataset, recipe, stem + "_teacher.checkpoint.h5",
                                         train_data=train_data, temperature=T, what="a distillation teacher", **common)
        x = train_data[0]
        with stochastic.randomness(teacher, stochastic.OFF):
            soft = decision.softmax(metrics.predict_logits(teacher, x) / T).astype(np.float32)
        student = self.build(shape, dataset, seed)
        student.set_weights(start)
        log(f"distillation student at T={T:g} on the teacher's soft labels")
        history = training.train(student, dataset, recipe, fine_tuning.checkpoint_path(output), train_data=(x, soft),
                                 temperature=T, what="a distillation student", **common)
        return student, history, {"teacher_history": teacher_history, "temperature": T}


def _confidences(text):
    from randspike import adversarial_examples

    values = [item for item in str(text).replace(";", " ").split() if item]
    return tuple(adversarial_examples.check_confidences([checks.nonnegative(v, "confidences") for v in values]))


def _adversarial_arguments():
    """Keyword-only spec arguments of the adversarial schemes (they are part of what the defense is, so two runs
    with other examples are two specs). Default None: Table 3's value for the data set."""
    count = lambda name: (lambda text: checks.count(text, name, minimum=1))  # noqa: E731
    return (Argument("confidences", _confidences, None, "C&W confidences K, separated by ';' (Table 3: MNIST 0;5;10;15)",
                     keyword_only=True, format=lambda v: ";".join(f"{k:g}" for k in v), metavar="K;K"),
            Argument("per_confidence", count("per_confidence"), None, "examples generated per K (Table 3: 3000 MNIST)",
                     keyword_only=True, metavar="N"),
            Argument("kept", count("kept"), None, "smallest-L2 examples added (paper 10,000 of 12,000; default 5/6 of "
                     "those generated)", keyword_only=True, metavar="N"),
            Argument("l2_cutoff", lambda text: checks.positive(text, "l2_cutoff"), None,
                     "largest L2 kept (Table 3: 3.0 MNIST, 1.0 others)", keyword_only=True, metavar="L2"),
            Argument("cw_iterations", count("cw_iterations"), 1000, "C&W iterations", keyword_only=True, metavar="N"),
            Argument("cw_search_steps", count("cw_search_steps"), 9, "C&W binary-search steps", keyword_only=True,
                     metavar="N"),
            Argument("cw_learning_rate", lambda text: checks.positive(text, "cw_learning_rate"), 0.01,
                     "C&W Adam step (Carlini's 0.01; fewer iterations need a larger one)", keyword_only=True,
                     metavar="LR"),
            Argument("eot", count("eot"), 1, "EOT samples per C&W step on the stochastic target", keyword_only=True,
                     metavar="N"))


class AdversarialScheme(Scheme):
    """Retrained with targeted C&W-L2 examples crafted against a trained model of :attr:`target_scheme` (section
    5.1.1, Table 3, appendix A.1): random training images and targets, the table's confidences, examples over the L2
    cut-off discarded, sorted by L2, the smallest kept (paper 10,000 of 12,000) and added with their true labels.

    The target is the ``target_model`` setting, else the same store's trained target (``siblings``), else trained
    here first (``<output stem>_target.h5``, same seed, epochs and settings)."""

    target_scheme = None
    settings_taken = COMMON_SETTINGS + ("target_model",)

    def target_spec(self, args):
        keep = args.get("keep")
        return parse(self.target_scheme if keep is None else f"{self.target_scheme}:{keep!r}")

    def reuses(self, args, other):
        """Its target scheme's model (the examples are crafted against it)."""
        return other == self.target_spec(args)

    def training_data(self, args, dataset, output, *, epochs, seed, settings, siblings, verbose, log):
        from randspike import adversarial_examples as adv

        target = self.target_spec(args)
        stem = os.path.splitext(output)[0]
        path = settings.get("target_model") or siblings.get(target.text)
        if path is None:
            path = stem + "_target.h5"
            if not os.path.exists(path):
                log(f"training the target model {target.text} first -> {path}")
                target.train(dataset, path, epochs=epochs, seed=seed, verbose=verbose, log=log,
                             **{k: settings[k] for k in COMMON_SETTINGS if settings.get(k) is not None})
        target_model = target.load(path)
        paper = adv.paper_settings(dataset.name)
        confidences = args["confidences"] or paper["confidences"]
        per_confidence = args["per_confidence"] or paper["per_confidence"]
        kept = args["kept"] or max(1, int(round(len(confidences) * per_confidence * adv.PAPER_KEPT / adv.PAPER_GENERATED)))
        examples = adv.generate(target_model, dataset.x_train, dataset.y_train, stem + "_adv_examples", confidences,
                                per_confidence, args["l2_cutoff"] or paper["l2_cutoff"], kept, seed=seed, log=log,
                                max_iterations=args["cw_iterations"], binary_search_steps=args["cw_search_steps"],
                                learning_rate=args["cw_learning_rate"], eot_samples=args["eot"])
        if not len(examples["x_adv"]):
            raise ConfigError(f"{self.title}: none of the {examples['summary']['generated']} C&W attacks on the target "
                              f"succeeded under the L2 cut-off (cw_search_steps={args['cw_search_steps']}, "
                              f"cw_iterations={args['cw_iterations']}); nothing to train on -- raise them")
        x, y = adv.augmented_training_set(dataset.x_train, dataset.y_train, examples)
        return (x, y), {"target_model": str(path), "adversarial_examples": examples["summary"]}


@register
class RandomSpikingAdversarial(AdversarialScheme):
    name = "rs1_adv"
    title = "RS-1-Adv"
    summary = "RS-1 retrained with C&W-L2 examples crafted against a trained RS-1 model"
    reference = "Random Spiking paper section 5.1.1, Table 3, appendix A.1; REFERENCE section 9"
    spiking = True
    arguments = (KEEP,) + _adversarial_arguments()
    target_scheme = "rs1"


@register
class DropoutAdversarial(AdversarialScheme):
    name = "dropout_adv"
    title = "Dropout-Adv"
    summary = "Dropout retrained with C&W-L2 examples crafted against a trained Dropout model"
    reference = "Random Spiking paper section 5.1.1, Table 3, appendix A.1; REFERENCE section 9"
    dropout = True
    arguments = _adversarial_arguments()
    target_scheme = "rs_dropout"
