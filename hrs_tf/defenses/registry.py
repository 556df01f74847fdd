"""The defense registry: every defense declared once, in its own module, under one spec grammar.

**Spec grammar** (every tool and experiment parses defenses through :func:`parse`)::

    NAME[:ARG,ARG,...]      e.g. none, dropout:0.3, sap:exact, gaussian:0.2,0.1, hrs:5x5, adv:0.3, hrs:2x2,of=10x10

Arguments are given in the order the defense declares them, or as ``key=value``; a missing argument takes its
default (``None``: decided when the model is made, e.g. from the data set). Every spec has a canonical text
(:attr:`Spec.text`, which parses back to the same spec) and a display name for reports (:attr:`Spec.label`).

**How a defense is made** (:attr:`Defense.make`):

- ``trained``    trained from scratch (:meth:`Defense.train`);
- ``wrapped``    built around a trained model without retraining (:meth:`Defense.apply` on the model of
  :meth:`Defense.source`, by default the undefended model ``none``);
- ``installed``  installed on a trained model (:meth:`Defense.apply`), then fine-tuned (:meth:`Defense.train`);
- ``transform``  a transform of a trained model's weights (:meth:`Defense.apply`).

**What an adaptive attacker needs** is read from the model, not from the defense's name
(:mod:`hrs_tf.layers.stochastic`): whether it is stochastic (``is_stochastic``), its fixed realisations
(``fixed_realisation``, ``pinned``) and the layers whose backward pass BPDA may replace (``bpda_layers``);
:func:`attacker_view` collects them.

A defense module subclasses :class:`Defense` and decorates it with :func:`register`; plug-in packages
(:mod:`hrs_tf.plugins`) register theirs the same way from their own modules.
"""

import dataclasses
import os

from hrs_tf import checks, fileio, plugins
from hrs_tf.errors import ConfigError
from hrs_tf.layers import stochastic

TRAINED, WRAPPED, INSTALLED, TRANSFORM = "trained", "wrapped", "installed", "transform"
MAKES = (TRAINED, WRAPPED, INSTALLED, TRANSFORM)
UNDEFENDED = "none"  # the spec of the undefended base model, the default source of derived defenses

_REGISTRY = {}


@dataclasses.dataclass(frozen=True)
class Argument:
    """One argument of a defense spec: its name, how its text is read, its default and a help line."""

    name: str
    parse: object  # callable: text -> checked value (ConfigError on bad input)
    default: object = None
    help: str = ""
    keyword_only: bool = False  # written as key=value in the canonical text
    format: object = None  # callable: value -> text (default: str; floats in their shortest exact form)
    metavar: str = None  # how the grammar shows the value (default: the name in capitals)
    always: bool = False  # written in the canonical text even at its default (e.g. HRS channel counts)

    def text(self, value):
        if self.format is not None:
            return self.format(value)
        return repr(value) if isinstance(value, float) else str(value)  # repr: parses back to the same float


class Defense:
    """Base class of a registered defense: class attributes describe it, methods make its models.

    Subclasses set :attr:`name`, :attr:`summary`, :attr:`reference`, :attr:`make` and :attr:`arguments`, and
    implement the methods their ``make`` needs: :meth:`apply` (wrapped, installed, transform) and/or
    :meth:`fit` (or the whole of :meth:`train`, for defenses with their own resumable output).
    """

    name = None
    title = None  # the defense's name in reports and tables, e.g. "Dropout" (default: the spec name)
    summary = ""
    reference = ""
    make = TRAINED
    arguments = ()
    default_epochs = None  # epochs when trained (the reference recipe), None if never trained
    compared_in = {}  # {experiment: (argument text, ...)}: the settings under which a paper's evaluation uses it
    epoch_checkpoints = False  # True: :meth:`train` hands :meth:`fit` a per-epoch ``checkpoint`` file to resume from

    # -- description -------------------------------------------------------------------------------
    def label(self, args):
        """Display name of the spec with these arguments (reports, plots); default ``name arg arg``."""
        given = [self._argument(key).text(value) for key, value in args.items() if value is not None]
        return " ".join([self.name] + given)

    def grammar(self):
        """The spec grammar, e.g. ``dropout[:TEST_RATE]``."""
        if not self.arguments:
            return self.name
        parts = [(f"{a.name}=" if a.keyword_only else "") + (a.metavar or a.name.upper()) for a in self.arguments]
        return f"{self.name}[:{','.join(parts)}]"

    def _argument(self, key):
        for argument in self.arguments:
            if argument.name == key:
                return argument
        raise ConfigError(f"defense {self.name!r} has no argument {key!r}; its arguments: "
                          f"{', '.join(a.name for a in self.arguments) or 'none'}")

    # -- how it is made ------------------------------------------------------------------------------
    def source(self, args):
        """The spec of the trained model this defense is made from, or None (trained from scratch)."""
        return None if self.make == TRAINED else parse(UNDEFENDED)

    def apply(self, args, model, seed=None):
        """The defended model made from the trained ``model`` of :meth:`source` (wrapped, installed, transform)."""
        raise ConfigError(f"defense {self.name!r} is {self.make}; it is not made from a trained model")

    def for_dataset(self, args, model, dataset_name):
        """``model`` (made by :meth:`apply`) completed with settings that depend on the data set it will serve (e.g. a
        default radius that differs between MNIST and Fashion-MNIST, whose inputs have one shape); default: as is."""
        return model

    def fit(self, args, dataset, *, epochs, seed=0, verbose=2, log=print, source_model=None, **settings):
        """Trains the defended model; returns ``(model, record)`` (trained; installed: fine-tunes ``source_model``)."""
        raise ConfigError(f"defense {self.name!r} is {self.make}; it is not trained")

    def train(self, args, dataset, output, *, epochs, seed=0, verbose=2, log=print, source_model=None, siblings=None,
              **settings):
        """Trains the defended model and writes it to ``output`` (``.h5`` and its JSON sidecar); a defense with
        a resumable output of its own (a folder, a checkpoint) overrides this, or sets :attr:`epoch_checkpoints` to
        have :meth:`fit` given ``checkpoint=`` the file beside ``output`` to write after every epoch and resume from.
        ``siblings``: {spec text: output} of models already made in the same store (a trainer may reuse their work)."""
        if self.epoch_checkpoints:
            from hrs_tf.training import fine_tuning

            settings = dict(settings, checkpoint=fine_tuning.checkpoint_path(output))
        model, record = self.fit(args, dataset, epochs=epochs, seed=seed, verbose=verbose, log=log,
                                 source_model=source_model, **settings)
        write_model(model, record, output)

    def reuses(self, args, other):
        """Whether training this defense may reuse ``other`` (a spec) trained in the same store (see :meth:`train`'s
        ``siblings``): an executor then trains ``other`` first, so that a run's models do not depend on which cell
        happened to finish first. Default: no."""
        return False

    def artifact(self, stem):
        """Where :meth:`train` writes a model whose file name without extension is ``stem``."""
        return stem + ".h5"

    def load(self, args, path):
        """The model written by :meth:`train` at ``path``."""
        from hrs_tf.models import serialization

        return serialization.load_model(path)

    def record(self, path):
        """The training record (JSON sidecar) of the model at ``path``, or None."""
        sidecar = os.path.splitext(path)[0] + ".json"
        return fileio.read_json(sidecar) if os.path.isfile(sidecar) else None

    def strength_sweep(self, dataset_name, specs):
        """Specs of this defense at several strengths (the DES study, HRS paper Table 2), given the specs of
        an experiment's plan (e.g. HRS sweeps subsets of the plan's largest HRS model). Default: none."""
        return []


@dataclasses.dataclass(frozen=True)
class Spec:
    """A defense with its arguments: ``registry.parse("dropout:0.3")``."""

    defense: Defense
    arguments: tuple  # ((name, value), ...) in declared order

    @property
    def args(self):
        return dict(self.arguments)

    @property
    def name(self):
        return self.defense.name

    @property
    def text(self):
        """Canonical spec text: the arguments given (or marked ``always``) in declared order, positional until one
        is left out, key=value after that and for keyword-only ones; it parses back to the same spec."""
        values, parts, gap = self.args, [], False
        for a in self.defense.arguments:
            if not (a.always or values[a.name] != a.default):
                gap = True
                continue
            parts.append(f"{a.name}={a.text(values[a.name])}" if a.keyword_only or gap else a.text(values[a.name]))
        return self.name + (":" + ",".join(parts) if parts else "")

    @property
    def label(self):
        return self.defense.label(self.args)

    @property
    def make(self):
        return self.defense.make

    def source(self):
        return self.defense.source(self.args)

    def apply(self, model, seed=None, dataset_name=None):
        """The defended model made from ``model``; with ``dataset_name``, completed for that data set
        (:meth:`Defense.for_dataset`)."""
        made = self.defense.apply(self.args, model, seed=seed)
        return made if dataset_name is None else self.defense.for_dataset(self.args, made, dataset_name)

    def train(self, dataset, output, **settings):
        return self.defense.train(self.args, dataset, output, **settings)

    def load(self, path):
        return self.defense.load(self.args, path)

    def __str__(self):
        return self.text


# -- registration and lookup -----------------------------------------------------------------------------
def register(defense_class):
    """Class decorator: registers one instance of a :class:`Defense` subclass under its ``name``."""
    defense = defense_class()
    name = defense.name
    if not name or not isinstance(name, str) or any(c in name for c in ":,= "):
        raise ConfigError(f"defense class {defense_class.__name__} needs a name without ':', ',', '=' or spaces")
    checks.choice(defense.make, f"make of defense {name!r}", MAKES)
    previous = _REGISTRY.get(name)
    if previous is not None and type(previous).__qualname__ != defense_class.__qualname__:
        raise ConfigError(f"defense {name!r} is registered twice ({type(previous).__module__} and {defense_class.__module__})")
    _REGISTRY[name] = defense
    return defense_class


def _ensure_loaded():
    from hrs_tf import defenses  # noqa: F401  (the core defenses register on import)

    plugins.load()


def get(name):
    """The registered :class:`Defense` called ``name``; ConfigError listing the names otherwise."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown defense {name!r}; choose one of {', '.join(names())}") from None


def names():
    """Names of every registered defense, in registration order."""
    _ensure_loaded()
    return list(_REGISTRY)


def parse(text):
    """The :class:`Spec` of ``text`` (``NAME[:ARGS]``, a Spec passes through); ConfigError on bad input."""
    if isinstance(text, Spec):
        return text
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"defense spec {text!r} is empty; write NAME[:ARGS], e.g. dropout:0.3")
    name, _, rest = text.strip().partition(":")
    defense = get(name.strip().lower())
    values = {a.name: a.default for a in defense.arguments}
    given = set()
    positional = [a for a in defense.arguments if not a.keyword_only]
    items = [item.strip() for item in rest.split(",")] if rest.strip() else []
    position = 0
    for item in items:
        key, eq, value = item.partition("=")
        if eq:
            argument = defense._argument(key.strip())
        else:
            if position >= len(positional):
                raise ConfigError(f"defense {text!r} has too many arguments; the grammar is {defense.grammar()}")
            argument, value = positional[position], key
            position += 1
        if argument.name in given:
            raise ConfigError(f"defense {text!r} gives {argument.name} twice")
        given.add(argument.name)
        try:
            values[argument.name] = argument.parse(value.strip())
        except ConfigError as e:
            raise ConfigError(f"defense {text!r}: {e} (grammar: {defense.grammar()})") from None
    return Spec(defense, tuple((a.name, values[a.name]) for a in defense.arguments))


def compared_in(experiment):
    """The specs every registered defense declares for ``experiment`` (e.g. ``"hrs_paper"``), in registration order."""
    return [parse(f"{name}:{args}" if args else name) for name in names()
            for args in get(name).compared_in.get(experiment, ())]


def parse_list(items):
    """Specs from a comma-separated list (or the items of a list flag, which absl splits at every comma): an item
    whose name part is not a registered defense continues the previous spec's arguments, so
    ``none,gaussian:0.2,0.1,hrs:2x2,of=5x5`` is three specs."""
    if isinstance(items, str):
        items = items.split(",")
    texts = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        if texts and item.partition(":")[0].lower() not in names():
            texts[-1] += "," + item
        else:
            texts.append(item)
    return [parse(text) for text in texts]


def listing():
    """Markdown table of every registered defense: spec grammar, how it is made, summary, reference."""
    from hrs_tf.reporting import markdown_table

    rows = [[f"`{d.grammar()}`", d.make, d.summary, d.reference] for d in (get(n) for n in names())]
    return markdown_table(["spec", "made", "defense", "reference"], rows)


# -- making models ---------------------------------------------------------------------------------------------
def write_model(model, record, output):
    """Saves ``model`` to ``output`` (.h5) and ``record`` to the JSON sidecar beside it; returns the sidecar."""
    from hrs_tf.models import serialization

    if not str(output).endswith(".h5"):
        raise ConfigError(f"output {output!r} must end in .h5")
    serialization.save_model(model, output)
    sidecar = os.path.splitext(output)[0] + ".json"
    fileio.write_json(sidecar, dict(record, output=str(output)))
    return sidecar


def attacker_view(model):
    """What an adaptive attacker needs to know about ``model``, derived from its layers (JSON-ready)."""
    layers = stochastic.stochastic_layers(model)
    return {
        "stochastic": bool(layers),
        "stochastic_layers": [layer.name for layer in layers],
        "discrete_realisations": {layer.name: layer.num_realisations for layer in stochastic.pinnable_layers(model)},
        "draw_shared_across_batch": [layer.name for layer in layers if layer.shares_draw_across_batch],
        "bpda_layers": {layer.name: (s if isinstance(s, str) else getattr(s, "__name__", "surrogate"))
                        for layer, s in stochastic.bpda_layers(model).items()},
    }
