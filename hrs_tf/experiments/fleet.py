"""Surrogate fleets: n models of one defense that differ only in their seed and in a random part of the training data.

Random Spiking paper section 5.4: "for each training/defense method, we have 16 models that are surrogates of each
other ... For each surrogate model, we randomly select half of the original dataset as the training dataset".
Member k of a fleet in ``work_dir`` is a :class:`hrs_tf.experiments.model_store.ModelStore` in
``<work_dir>/model_<k>/`` over the member's training images (:func:`training_indices`, a seeded draw that is
recorded by its hash, not saved: it is derivable) with training seed :func:`member_seed`. A spec made from a source
model (a wrapped or installed defense) has its source trained in the same store, as the Random Spiking study does,
or taken from a fleet of that source made with the same settings (``source_fleet``: member k's source is that
fleet's member k, the same seed and images, so the same model; it is trained there if missing, not twice). Any
registered defense works.

Making member k is a cell of its own (kind ``fleet``, name ``<label> model <k>``; :meth:`Fleet.member_cells`):
members are independent, so they may train at once on the workers of an executor
(:mod:`hrs_tf.experiments.execution`); an experiment using a fleet (the translucent-box study) lists these cells in
its own plan. A member's cell writes its record ``<work_dir>/members/<k>.json`` atomically when it is made; the
manifest ``<work_dir>/fleet.json`` (the fleet's settings and every finished member's record) is assembled from them
by the driver once its cells are done (a manifest of earlier runs, which held the members itself, is still read).
A killed run restarted with the same command trains only what is missing (a half-trained member continues at its
next epoch through its trainer's own checkpoint). The fleet's settings are stored once
(:func:`hrs_tf.experiments.cells.check_settings`): another spec, seed, fraction, epochs or training setting in the
same folder is refused; asking for more models extends the fleet.
"""

import dataclasses
import os
import time

from hrs_tf import checks, fileio
from hrs_tf.defenses import registry
from hrs_tf.errors import ConfigError
from hrs_tf.experiments.cells import SETTINGS_FILE, check_settings, json_ready
from hrs_tf.experiments.execution import Cell, Needs, Recipe, cell_seed, execute
from hrs_tf.experiments.fleet_members import (check_epochs, check_fraction, indices_hash, member_dataset,
                                              member_seed, total_epochs, training_indices)
from hrs_tf.experiments.model_store import ModelStore

MANIFEST_FILE = "fleet.json"
MEMBERS_DIR = "members"  # one record per finished member, written by its cell
FLEET = "fleet"  # the kind of a member's cell
MODELS = 16  # models per scheme [paper 16]
TRAIN_FRACTION = 0.5  # each model's share of the training set [paper: half]
POOL_SETTING = "train_images"  # a training setting the fleet applies itself: members draw from the first N images
CONTENT_KEYS = ("dataset", "train_pool", "spec", "epochs", "source_epochs", "train_fraction", "seed", "settings")


def _is_derived(spec):
    """Made from its source model without training (wrapped, transform, subset)."""
    return spec.source() is not None and spec.make != registry.INSTALLED


def _relative(path, work_dir):
    return None if path is None else os.path.relpath(path, work_dir)


# -- the fleet ---------------------------------------------------------------------------------------------------
class Fleet:
    """``models`` surrogate models of ``spec`` (a registry spec or its text) on ``dataset`` in ``work_dir``.

    ``epochs``: of the spec's model (default: its defense's ``default_epochs``; a wrapped spec is not trained, so
    there they are the source's); ``source_epochs``: of the source model of a wrapped / installed spec (default:
    ``epochs`` if given, else the source defense's own default: MagNet 100 on a Dropout model of 50);
    ``settings``: training settings given to every trainer (e.g. ``arch``), except ``train_images=N``, which the
    fleet applies itself: the members' images are drawn from the first N.

    On an executor the fleet is an experiment (``recipe`` / ``cell_plan`` / ``done`` / ``compute``) whose cells are
    its members' (:meth:`member_cells`); another experiment may list those cells in its plan and hand them to
    :meth:`done` and :meth:`compute`.
    """

    def __init__(self, dataset, spec, work_dir, models=MODELS, epochs=None, source_epochs=None,
                 train_fraction=TRAIN_FRACTION, seed=0, settings=None, log=print, source_fleet=None):
        self.dataset = dataset
        self.spec = registry.parse(spec)
        self.models = checks.count(models, "models", minimum=1)
        self.train_fraction = check_fraction(train_fraction)
        self.seed = checks.count(seed, "seed")
        self.work_dir, self.log = work_dir, log
        self.settings = {k: v for k, v in dict(settings or {}).items() if v is not None}
        self.label = self.spec.label
        source = self.spec.source()
        self.source = source
        derived = _is_derived(self.spec)
        self.epochs = None if derived else check_epochs(self.spec.defense.default_epochs if epochs is None else epochs)
        self.source_epochs = None
        if source is not None:
            given = epochs if source_epochs is None else source_epochs
            self.source_epochs = check_epochs(source.defense.default_epochs if given is None else given,
                                              "source_epochs")
        elif source_epochs is not None:
            raise ConfigError(f"{self.spec.text!r} is trained from scratch; source_epochs does not apply to it")
        if not derived and self.epochs is None:
            raise ConfigError(f"{self.spec.text!r} must be trained and its defense has no default epochs; give epochs")
        if source is not None and self.source_epochs is None and source.source() is None:
            raise ConfigError(f"the source {source.text!r} of {self.spec.text!r} must be trained; give source_epochs")
        self.pool = self._pool(dataset)
        self.num_train = len(self.pool.x_train)
        training_indices(self.num_train, self.train_fraction, self.seed, 0)  # refuses a fraction leaving no image
        self.trainer_settings = {k: v for k, v in self.settings.items() if k != POOL_SETTING}
        self.manifest_path = os.path.join(work_dir, MANIFEST_FILE)
        self.source_fleet = None if source_fleet is None else self._check_source_fleet(source_fleet)
        check_settings(work_dir, self._header(), CONTENT_KEYS, "a fleet",
                       hint="use another --work_dir or the original settings (only --models may change)")
        stored = fileio.read_json(self.manifest_path) if os.path.exists(self.manifest_path) else {}
        self._entries = {int(e["model"]): e for e in stored.get("members", [])}  # earlier runs kept them there
        self._read_records()
        self._stores = {}  # member -> its ModelStore, once used here
        self._models = {}
        self._seed = None  # the current cell's seed (see reseed)
        self._planned = None  # the members cell_plan lists (train sets them; None: all)

    @classmethod
    def at(cls, dataset, work_dir, log=print):
        """The fleet whose settings ``work_dir`` holds (ConfigError if it holds none)."""
        path = os.path.join(work_dir, SETTINGS_FILE)
        if not os.path.exists(path):
            raise ConfigError(f"{work_dir!r} holds no fleet (no {SETTINGS_FILE}); train it with tools/train_fleet.py")
        h = fileio.read_json(path)
        source_fleet = None if h.get("source_fleet") is None else os.path.join(work_dir, h["source_fleet"])
        return cls(dataset, h["spec"], work_dir, models=h["models"], epochs=h["epochs"],
                   source_epochs=h["source_epochs"], train_fraction=h["train_fraction"], seed=h["seed"],
                   settings=h["settings"], log=log, source_fleet=source_fleet)

    def _check_source_fleet(self, other):
        """``other`` (a Fleet or its folder) if its member k is this fleet's source model k: the source spec and
        epochs, the same training pool, share, seed and settings, and at least as many models; else ConfigError."""
        other = other if isinstance(other, Fleet) else Fleet.at(self.dataset, other, log=self.log)
        if self.source is None:
            raise ConfigError(f"{self.spec.text!r} has no source model; a source fleet does not apply to it")
        mine = {"spec": self.source.text, "epochs": self.source_epochs, "dataset": self.pool.name,
                "train_pool": self.num_train, "train_fraction": self.train_fraction, "seed": self.seed,
                "settings": self.settings}
        theirs = {"spec": other.spec.text, "epochs": other.epochs, "dataset": other.pool.name,
                  "train_pool": other.num_train, "train_fraction": other.train_fraction, "seed": other.seed,
                  "settings": other.settings}
        differ = [f"{key} {theirs[key]!r}, not {mine[key]!r}" for key in mine if json_ready(mine[key]) !=
                  json_ready(theirs[key])]
        if other.models < self.models:
            differ.append(f"{other.models} models, not {self.models}")
        if differ:
            raise ConfigError(f"the fleet in {other.work_dir!r} cannot be the source fleet of {self.spec.text!r}: "
                              f"it has {'; '.join(differ)}")
        return other

    def _pool(self, dataset):
        """The training images the members draw from: all, or the first ``train_images`` of them."""
        count = self.settings.get(POOL_SETTING)
        if count is None:
            return dataset
        count = checks.count(count, POOL_SETTING, minimum=1)
        if count >= len(dataset.x_train):
            return dataset
        return dataclasses.replace(dataset, x_train=dataset.x_train[:count], y_train=dataset.y_train[:count],
                                   source=f"{dataset.source} (first {count} training images)")

    def _header(self):
        return json_ready({"dataset": self.pool.name, "train_pool": self.num_train, "spec": self.spec.text,
                           "label": self.label, "epochs": self.epochs, "source_epochs": self.source_epochs,
                           "train_fraction": self.train_fraction, "seed": self.seed, "settings": self.settings,
                           "models": self.models, "source_fleet": None if self.source_fleet is None else
                           os.path.relpath(self.source_fleet.work_dir, self.work_dir)})

    # -- members ---------------------------------------------------------------------------------------------
    def indices(self, k):
        """The training-image indices of member ``k`` (into the pool: the first ``train_images`` if given)."""
        return training_indices(self.num_train, self.train_fraction, self.seed, k)

    def store(self, k):
        """A new ModelStore of member ``k`` over its training images, the spec (and its source) declared."""
        k = self._member(k)
        dataset = member_dataset(self.pool, self.indices(k), k)
        store = ModelStore(dataset, os.path.join(self.work_dir, f"model_{k}"), seed=member_seed(self.seed, k),
                           settings=self.trainer_settings, log=self.log, existing=self._source_file(k))
        store.add(self.label, self.spec, None if _is_derived(self.spec) else self.epochs)
        if self.source is not None and store.name_of(self.source) is None:
            store.add(self.source.label, self.source, None if _is_derived(self.source) else self.source_epochs)
        return store

    def _store(self, k, new=False):
        """Member ``k``'s store used here (a new one if ``new``), its models' randomness at the current cell's."""
        if new or k not in self._stores:
            store = self._stores[k] = self.store(k)
            if self._seed is not None:
                store.reseed(self._member_seed(k))
        return self._stores[k]

    def _source_file(self, k):
        """{source label: path} of member ``k``'s source model when it is not this member's own: the file its
        record names (outside its folder), else the source fleet's member ``k`` (made or to be made); else {}."""
        entry = self._entry(k) or {}
        if entry.get("source_file") is not None:
            path = os.path.normpath(os.path.join(self.work_dir, entry["source_file"]))
            own = os.path.join(os.path.normpath(self.work_dir), f"model_{k}") + os.sep
            return {} if path.startswith(own) else {self.source.label: path}
        if self.source_fleet is None:
            return {}
        theirs = self.source_fleet.store(k)
        return {self.source.label: theirs.path(self.source_fleet.label)}

    def _member(self, k):
        k = checks.count(k, "model")
        if k >= self.models:
            raise ConfigError(f"model {k} is outside this fleet's models 0..{self.models - 1} (models={self.models})")
        return k

    def _record_path(self, k):
        return os.path.join(self.work_dir, MEMBERS_DIR, f"{k}.json")

    def _read_records(self):
        folder = os.path.join(self.work_dir, MEMBERS_DIR)
        for file in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            if file.endswith(".json") and not file.startswith("."):
                entry = fileio.read_json(os.path.join(folder, file))
                self._entries[int(entry["model"])] = entry

    def _has_files(self, entry):
        files = [entry.get("file"), entry.get("source_file")]
        return all(os.path.exists(os.path.join(self.work_dir, f)) for f in files if f is not None)

    def _entry(self, k):
        """Member ``k``'s record: known here, else read from its file (another process may have made it)."""
        entry = self._entries.get(k)
        if entry is None or not self._has_files(entry):
            path = self._record_path(k)
            if os.path.exists(path):
                entry = self._entries[k] = fileio.read_json(path)
        return entry

    def _is_finished(self, k):
        entry = self._entry(k)
        return entry is not None and self._has_files(entry)

    def finished(self):
        """Indices of the finished members (recorded, their files present), in order."""
        return [k for k in range(self.models) if self._is_finished(k)]

    def file(self, k):
        """The saved file (or folder) of member ``k``'s model; None for a derived model or an unfinished member."""
        entry = self._entry(self._member(k)) if self._is_finished(k) else None
        return None if entry is None or entry["file"] is None else os.path.join(self.work_dir, entry["file"])

    def model(self, k):
        """Member ``k``'s model (a Keras model, or what ``spec.apply`` gives for a wrapped spec); made first if
        missing, then cached."""
        k = self._member(k)
        if k not in self._models:
            if not self._is_finished(k):
                self._make(k)
            self._models[k] = self._store(k).get(self.label)
        return self._models[k]

    # -- randomness --------------------------------------------------------------------------------------------
    def _member_seed(self, k):
        return cell_seed(f"model {k}", self._seed)

    def reseed(self, seed):
        """Restarts the seed generators of every member model used here (and of those used from now on) from
        ``seed`` and the member (a :class:`~hrs_tf.experiments.cells.CellStore` ``reseed`` callback: members draw
        apart, and a cell draws the same whichever cells this process computed before)."""
        self._seed = int(seed)
        for k, store in self._stores.items():
            store.reseed(self._member_seed(k))

    # -- cells -------------------------------------------------------------------------------------------------
    def cell_name(self, k):
        return f"{self.label} model {k}"

    def cell_key(self, k):
        """The key of member ``k``'s cell (what a cell using its model waits for)."""
        return f"{FLEET}/{self.cell_name(k)}"

    def member_cells(self, members=None, needs=Needs(), after_source=False):
        """The cells making members ``members`` (default: every one), in order; ``args`` = (label, member).
        ``after_source``: the plan lists the source fleet's cells too, and member k waits for its source's."""
        members = range(self.models) if members is None else sorted({self._member(k) for k in members})
        after = (lambda k: (self.source_fleet.cell_key(k),)) if after_source and self.source_fleet else (lambda k: ())
        return [Cell(FLEET, self.cell_name(k), args=(self.label, k), needs=needs, after=after(k)) for k in members]

    def recipe(self):
        """How a worker builds this fleet (absolute work folder)."""
        return Recipe(Fleet, dataset=self.dataset, spec=self.spec.text, work_dir=os.path.abspath(self.work_dir),
                      models=self.models, epochs=self.epochs, source_epochs=self.source_epochs,
                      train_fraction=self.train_fraction, seed=self.seed, settings=self.settings,
                      source_fleet=None if self.source_fleet is None else os.path.abspath(self.source_fleet.work_dir))

    def cell_plan(self):
        return self.member_cells(self._planned)

    def done(self, cell):
        return self._is_finished(cell.args[-1])

    def compute(self, cell):
        """Makes the member of ``cell`` and writes its record."""
        self._make(self._member(cell.args[-1]))

    # -- making ----------------------------------------------------------------------------------------------
    def train(self, members=None, executor=None):
        """Makes every missing member (or only those in ``members``) on ``executor`` (default: in this process, in
        order; a progress line per member), then writes the manifest; returns the finished members."""
        members = list(range(self.models)) if members is None else sorted({self._member(k) for k in members})
        missing = [k for k in members if not self._is_finished(k)]
        self.log(f"fleet {self.label} ({self.spec.text}) in {self.work_dir}: {len(members) - len(missing)} of "
                 f"{len(members)} model(s) already made; each trains on {self.train_fraction:g} of "
                 f"{self.num_train} {self.pool.name} training images")
        self._planned = members
        try:
            execute(self, executor, self.log)
        finally:
            self._planned = None
            self.write_manifest()
            if self.source_fleet is not None:  # it may have made members for this fleet
                self.source_fleet.write_manifest()
        return self.finished()

    def _make(self, k):
        """Trains what member ``k`` is made from (seeded by the member) and writes its record atomically."""
        import keras

        if self.source_fleet is not None and not self._is_finished(k) and not self.source_fleet._is_finished(k):
            self.source_fleet._make(k)  # trained where it belongs, once
        keras.utils.set_random_seed(cell_seed(self.cell_key(k), self.seed))
        store = self._store(k, new=True)
        indices = self.indices(k)
        trainable = [name for name in store.names() if not _is_derived(store.entries[name][0])]
        missing = [name for name in trainable if not os.path.exists(store.path(name))]
        start = time.time()
        self._models.pop(k, None)
        store.get(self.label)
        seconds = max(round(time.time() - start, 3), 0.001) if missing else 0.0
        source_name = None if self.source is None else store.name_of(self.source)
        entry = {"model": k, "seed": member_seed(self.seed, k), "train_images": int(len(indices)),
                 "indices_sha256": indices_hash(indices),
                 "file": _relative(store.file(self.label), self.work_dir),
                 "source_file": None if source_name is None else _relative(store.file(source_name), self.work_dir),
                 "epochs": self.epochs, "source_epochs": self.source_epochs,
                 "trained_epochs": sum(total_epochs(store.entries[name][1]) for name in missing),
                 "seconds": seconds}
        fileio.write_json(self._record_path(k), entry)
        self._entries[k] = entry
        self.log(f"fleet {self.label}: model {k} made in {seconds:.1f} s")
        return entry

    # -- what was made ---------------------------------------------------------------------------------------
    def manifest(self):
        """The fleet's settings and one entry per finished member (what ``fleet.json`` holds). Members the folder
        holds beyond ``models`` (a fleet reopened with fewer) are not this fleet's: left out, their records kept."""
        self._read_records()
        made = [self._entries[k] for k in self.finished()]
        return dict(self._header(), members=made)

    def write_manifest(self):
        """Writes ``fleet.json`` from the members' records (the driver does, once their cells are done)."""
        fileio.write_json(self.manifest_path, self.manifest())

    def throughput(self):
        """Training images per second over the members trained by some call: sum of train_images x the epochs
        trained then (spec and source) over the sum of their wall seconds (None if none was timed). A member
        resumed from a checkpoint counts all its epochs, so this overstates a resumed run's speed."""
        timed = [e for e in self.manifest()["members"] if e["seconds"] > 0 and e["trained_epochs"] > 0]
        if not timed:
            return None
        return sum(e["train_images"] * e["trained_epochs"] for e in timed) / sum(e["seconds"] for e in timed)
