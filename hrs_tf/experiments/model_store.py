"""The models of an experiment, made on demand through the defense registry and cached.

An experiment names each model it uses and says what it is: a defense spec and the epochs to train it with
(:meth:`ModelStore.add`). :meth:`ModelStore.get` then makes it the way its defense is made
(:mod:`hrs_tf.defenses.registry`):

- a spec with no source (trained from scratch) is trained once into ``<work_dir>/models/`` by its defense's
  resumable trainer, or read from a path the user gave (``existing``);
- a derived spec (wrapped, a transform, a subset of a trained model) is made from the model of its source
  spec, which the store makes first (declared by the experiment, or added under its label);
- an installed spec is applied to its source model, then fine-tuned and saved like a trained one.

Models already trained in the store are offered to a trainer as ``siblings`` (HRS 10x10 reuses the block-0
channels of HRS 5x5). ``models/provenance.json`` records, per name, the file it came from, its spec and
whether it is stochastic (derived from its layers), so reports need not load a model to know that; each name has a
file of its own there (``models/provenance/<name>.json``), so workers making models at once never overwrite each
other's records (the single ``models/provenance.json`` of earlier runs is still read).

On an executor (:mod:`hrs_tf.experiments.execution`) training a model is a cell of its own (:meth:`model_cell`):
the cells that use a model wait for the training cells it is made from (:meth:`requires`), and a trainer that
reuses another model of the store (:meth:`hrs_tf.defenses.registry.Defense.reuses`) waits for that one.
"""

import os

from hrs_tf import fileio
from hrs_tf.defenses import registry
from hrs_tf.errors import ConfigError
from hrs_tf.experiments.cells import check_settings, slug
from hrs_tf.experiments.execution import Cell, Needs, cell_seed
from hrs_tf.layers import stochastic

PROVENANCE_FILE = "provenance.json"  # the earlier single record of every model
PROVENANCE_DIR = "provenance"  # one record per model name
MODEL = "model"  # the kind of a training cell


class ModelStore:
    """Named models of one work folder. ``existing``: {name: path} of models trained elsewhere to use as they are;
    ``settings``: training settings passed to every trainer (e.g. ``arch``); ``seed``: the training seed."""

    def __init__(self, dataset, work_dir, existing=None, seed=0, settings=None, log=print):
        self.dataset, self.seed, self.log = dataset, int(seed), log
        self.dir = os.path.join(work_dir, "models")
        self.existing = dict(existing or {})
        self.settings = dict(settings or {})
        self.entries = {}  # name -> (spec, epochs)
        self._cache = {}
        self._seed = None  # the current cell's seed (see reseed)
        legacy = os.path.join(self.dir, PROVENANCE_FILE)
        self.provenance = fileio.read_json(legacy) if os.path.exists(legacy) else {}
        for name, entry in self.provenance.items():  # the earliest format: {name: path} of trained models
            if isinstance(entry, str):
                self.provenance[name] = {"path": entry, "spec": None, "stochastic": None}
        self._read_records()

    def _record_path(self, name):
        return os.path.join(self.dir, PROVENANCE_DIR, slug(name) + ".json")

    def _read_records(self):
        folder = os.path.join(self.dir, PROVENANCE_DIR)
        for file in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            if file.endswith(".json"):
                entry = fileio.read_json(os.path.join(folder, file))
                self.provenance[entry.pop("name")] = entry

    # -- declaring --------------------------------------------------------------------------------
    def add(self, name, spec, epochs=None):
        """Declares model ``name`` = ``spec`` trained for ``epochs`` (a derived spec needs none); returns ``name``.

        A name already declared with another spec or epochs is refused (one name, one model)."""
        spec = registry.parse(spec)
        entry = (spec, epochs)
        if self.entries.get(name, entry) != entry:
            old = self.entries[name]
            raise ConfigError(f"model {name!r} is declared twice: {old[0].text} ({old[1]} epochs) and {spec.text} "
                              f"({epochs} epochs)")
        self.entries[name] = entry
        return name

    def name_of(self, spec, epochs=None):
        """The name of the declared model that is ``spec`` (and, if given, trained for ``epochs``), or None."""
        spec = registry.parse(spec)
        for name, (other, other_epochs) in self.entries.items():
            if other == spec and (epochs is None or other_epochs == epochs):
                return name
        return None

    def names(self):
        return list(self.entries)

    def check_run(self, work_dir, settings, content_keys, holder):
        """Refuses models given as ``existing`` that the experiment does not declare, and a ``work_dir`` whose stored
        ``settings`` differ on ``content_keys`` or whose models had other specs or epochs
        (:func:`hrs_tf.experiments.cells.check_settings`, the declared models merged under ``models``)."""
        unknown = set(self.existing) - set(self.names())
        if unknown:
            raise ConfigError(f"models {sorted(unknown)} were given but this plan has no such model; its "
                              f"models: {', '.join(self.names())}")
        models = {name: [spec.text, epochs] for name, (spec, epochs) in self.entries.items()}
        check_settings(work_dir, dict(settings, models=models), content_keys, holder, merged=("models",))

    # -- making ------------------------------------------------------------------------------------
    def get(self, name):
        """The model ``name`` (made on first use, then cached)."""
        if name not in self._cache:
            if name not in self.entries:
                raise ConfigError(f"unknown model {name!r}; this experiment has {', '.join(self.entries) or 'none'}")
            model = self._cache[name] = self._make(name)
            if self._seed is not None:
                stochastic.reseed(model, cell_seed(name, self._seed))
        return self._cache[name]

    def path(self, name):
        """Where model ``name`` is (or will be) stored: the given path, else the file this store recorded for it
        (if it is still there), else its artifact in ``models/``."""
        spec, _ = self.entries[name]
        recorded = self.provenance.get(name, {}).get("path")
        if name in self.existing:
            return self.existing[name]
        if recorded and os.path.exists(recorded) and self.provenance[name].get("spec") in (None, spec.text):
            return recorded
        return os.path.join(self.dir, spec.defense.artifact(slug(name.lower())))

    def _source_name(self, source):
        name = self.name_of(source)
        if name is None:
            name = self.add(source.label, source, source.defense.default_epochs)
        return name

    def _make(self, name):
        spec, epochs = self.entries[name]
        source = spec.source()
        if source is not None and spec.make != registry.INSTALLED:
            model = spec.apply(self.get(self._source_name(source)), dataset_name=self.dataset.name)
            self._record(name, None, spec, model)
            return model
        path = self.path(name)
        if not os.path.exists(path):
            if epochs is None:
                raise ConfigError(f"model {name!r} ({spec.text}) must be trained, but no epochs were given")
            self.log(f"training {name} -> {path}")
            source_model = None if source is None else spec.apply(self.get(self._source_name(source)),
                                                                  dataset_name=self.dataset.name)
            siblings = {self.entries[n][0].text: self.path(n) for n in self.entries
                        if n != name and self.entries[n][0].source() is None and os.path.exists(self.path(n))}
            spec.train(self.dataset, path, epochs=epochs, seed=self.seed, verbose=2, log=self.log,
                       source_model=source_model, siblings=siblings, **self.settings)
        model = spec.load(path)
        self._record(name, path, spec, model)
        return model

    def _record(self, name, path, spec, model):
        entry = {"path": path, "spec": spec.text, "stochastic": stochastic.is_stochastic(model)}
        if self.provenance.get(name) != entry:
            self.provenance[name] = entry
            fileio.write_json(self._record_path(name), dict(entry, name=name))

    def refresh(self):
        """Reads the records other processes (workers) wrote since this store was made."""
        self._read_records()

    # -- randomness and cells ---------------------------------------------------------------------------
    def reseed(self, seed):
        """Restarts the seed generators of every model made so far, and of those made from now on, from ``seed`` and
        the model's name (a :class:`~hrs_tf.experiments.cells.CellStore` ``reseed`` callback)."""
        self._seed = int(seed)
        for name, model in self._cache.items():
            stochastic.reseed(model, cell_seed(name, self._seed))

    def trains(self, name):
        """Whether model ``name`` is a file this store makes (trained, or installed and fine-tuned)."""
        spec, _ = self.entries[name]
        return name not in self.existing and (spec.source() is None or spec.make == registry.INSTALLED)

    def made(self, name):
        """Whether the file of model ``name`` exists (a trained model's training has finished)."""
        return os.path.exists(self.path(name))

    def requires(self, name):
        """The keys of the training cells model ``name`` is made from: its own, else its source's (recursively)."""
        if name not in self.entries:
            raise ConfigError(f"unknown model {name!r}; this experiment has {', '.join(self.entries) or 'none'}")
        if self.trains(name):
            return (f"{MODEL}/{name}",)
        source = self.entries[name][0].source()
        return () if source is None or name in self.existing else self.requires(self._source_name(source))

    def model_cell(self, name, needs=Needs()):
        """The training cell of model ``name`` (None if the store does not train it): it waits for its source's
        training and for every declared model its trainer reuses."""
        if not self.trains(name):
            return None
        spec, _ = self.entries[name]
        after = list(self.requires(self._source_name(spec.source()))) if spec.source() is not None else []
        after += [f"{MODEL}/{other}" for other, (other_spec, _) in self.entries.items()
                  if other != name and self.trains(other) and spec.defense.reuses(spec.args, other_spec)]
        return Cell(MODEL, name, args=(name,), needs=needs, after=tuple(dict.fromkeys(after)))

    def model_cells(self, names=None, needs=Needs()):
        """The training cells of ``names`` (default: every declared model) and of the models they are made from."""
        names = list(self.entries) if names is None else list(names)
        keys = []
        for name in names:
            keys += self.requires(name)
        for name in list(self.entries):  # sources declared while resolving
            cell = self.model_cell(name, needs)
            if cell is not None:
                keys += cell.after
        wanted = set(keys)
        return [c for c in (self.model_cell(n, needs) for n in self.entries) if c is not None and c.key in wanted]

    # -- what is known without loading ----------------------------------------------------------------
    def is_stochastic(self, name):
        """Whether model ``name`` is stochastic, as recorded when it was made (None if not made yet; a model
        recorded without it is loaded from its file once to find out)."""
        entry = self.provenance.get(name)
        if entry is None:
            return None
        if entry["stochastic"] is None and entry["path"] and os.path.exists(entry["path"]) and name in self.entries:
            self._record(name, entry["path"], self.entries[name][0], self.entries[name][0].load(entry["path"]))
        return self.provenance[name]["stochastic"]

    def file(self, name):
        """The file or folder model ``name`` was loaded from (None for a derived model or one not made yet); where
        :meth:`path` finds it now if the recorded path is gone (the work folder renamed, moved, or run from another
        directory: the records hold the paths as they were given)."""
        entry = self.provenance.get(name)
        if entry is None or entry["path"] is None:
            return None
        return self.path(name) if name in self.entries else entry["path"]

    def training_epochs(self, name):
        """Epochs the model behind ``name`` was trained for, read from its training record ("-" if none)."""
        path = self.file(name)
        if path is None or name not in self.entries:
            return "-"
        record = self.entries[name][0].defense.record(path)
        epochs = (record or {}).get("epochs")
        if isinstance(epochs, list):
            return " + ".join(str(e) for e in epochs) + " (per block)"
        return "-" if epochs is None else str(epochs)
