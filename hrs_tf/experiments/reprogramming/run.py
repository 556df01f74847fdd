"""A reprogramming run as an experiment of the executor protocol (:mod:`hrs_tf.experiments.execution`).

A run reprograms one frozen target (a model file, optionally defended through the registry) to one source task with
one seed: a single training, so a single cell. It is one so that ``tools/reprogram.py`` takes the executor flags
every experiment driver takes (on Ray the training runs on a worker, e.g. a GPU node of a cluster). The cell's
result is the run's record (``output``), written atomically after the transform (``<stem>_transform.h5``); the
per-epoch checkpoint (``<stem>_checkpoint.h5``) resumes a killed training. The cell is done when the record holds
what this run asks for (every setting a resume compares, the fingerprints of the target and the data included, and
the epochs): asking for more epochs continues the run, other settings are refused by the checkpoint.
"""

import os

from hrs_tf import defenses, fileio, training
from hrs_tf import data as data_module
from hrs_tf.experiments.execution import Cell, Recipe, execute
from hrs_tf.experiments.reprogramming.train import run_settings, train_reprogramming
from hrs_tf.models import serialization

KIND = "reprogramming"


class Reprogramming:
    """Reprograms ``target_model`` (a file; ``target_defense`` a registry spec made from it without training) to
    classify ``source_dataset`` and writes the record ``output``. Paths are kept as given (they are what the record
    shows) and read relative to ``cwd`` (default: this process's), so a worker elsewhere finds the same files."""

    def __init__(self, target_model, output, source_dataset="mnist", data_dir=None, target_defense=defenses.UNDEFENDED,
                 target_label=None, epochs=10, kernel_size=3, batch_size=training.REFERENCE_BATCH_SIZE,
                 learning_rate=training.REFERENCE_LEARNING_RATE, seed=0, cwd=None, log=print):
        training.check_training_settings(epochs, batch_size, learning_rate)
        self.spec = defenses.parse(target_defense)
        self.target_model, self.output = target_model, output
        self.source_dataset, self.data_dir = source_dataset, data_dir
        self.target_defense, self.target_label = target_defense, target_label
        self.label = target_label or (os.path.splitext(os.path.basename(target_model))[0]
                                      if self.spec.text == defenses.UNDEFENDED else self.spec.label)
        self.epochs, self.kernel_size = epochs, kernel_size
        self.batch_size, self.learning_rate = batch_size, learning_rate
        self.seed, self.cwd, self.log = seed, os.path.abspath(cwd or os.getcwd()), log
        stem = os.path.splitext(output)[0]
        self.transform_path, self.checkpoint_path = stem + "_transform.h5", stem + "_checkpoint.h5"
        self._target = self._source = None

    def at(self, path):
        """``path`` (as given) where this process finds it."""
        return os.path.join(self.cwd, path)

    def target(self):
        if self._target is None:
            from hrs_tf import cli

            self._target = cli.load_model(self.at(self.target_model), self.spec.text, seed=self.seed)
        return self._target

    def source(self):
        if self._source is None:
            data_dir = None if self.data_dir is None else self.at(self.data_dir)
            self._source = data_module.load_dataset(self.source_dataset, data_dir)
        return self._source

    def description(self):
        return f"{self.target().name} (defense {self.target_defense})"

    def request(self):
        """What the record of this run holds (loads the target and the data: their fingerprints)."""
        settings = run_settings(self.target(), self.source(), self.epochs, self.kernel_size, self.batch_size,
                                self.learning_rate, self.seed, self.description())
        return dict(settings, target_model=self.target_model, target_defense=self.target_defense,
                    target_label=self.label)

    # -- the executor protocol ----------------------------------------------------------------------------
    def recipe(self):
        return Recipe(Reprogramming, target_model=self.target_model, output=self.output,
                      source_dataset=self.source_dataset, data_dir=self.data_dir, target_defense=self.target_defense,
                      target_label=self.target_label, epochs=self.epochs, kernel_size=self.kernel_size,
                      batch_size=self.batch_size, learning_rate=self.learning_rate, seed=self.seed, cwd=self.cwd)

    def cell_plan(self):
        """The one training cell."""
        return [Cell(KIND, os.path.splitext(os.path.basename(self.output))[0])]

    def done(self, cell):
        path = self.at(self.output)
        if not os.path.exists(path):
            return False
        record = fileio.read_json(path)
        return all(record.get(key) == value for key, value in self.request().items())

    def compute(self, cell):
        """Trains (or resumes) the transform; writes it, then the record."""
        source, target = self.source(), self.target()
        self.log(f"{source.name}: {len(source.x_train)} train / {len(source.x_test)} test images from {source.source}; "
                 f"target {self.target_model} (defense {self.target_defense})")
        transform, record = train_reprogramming(
            target, source, self.epochs, kernel_size=self.kernel_size, batch_size=self.batch_size,
            learning_rate=self.learning_rate, seed=self.seed, checkpoint_path=self.at(self.checkpoint_path),
            target_description=self.description(), target_label=self.label)
        serialization.save_model(transform, self.at(self.transform_path))
        record.update(target_model=self.target_model, target_defense=self.target_defense, output=self.output,
                      transform_model=self.transform_path, checkpoint=self.checkpoint_path)
        fileio.write_json(self.at(self.output), record)

    def run(self, executor=None):
        """Trains on ``executor`` (default: in this process) unless the record is already there; returns it."""
        execute(self, executor, self.log)
        return fileio.read_json(self.at(self.output))
