"""Table 2 and the stability study of the Random Spiking paper on one data set, resumable.

k independently trained models per scheme (paper 16): model k of every scheme lives in ``<work_dir>/model_<k>/``, a
:class:`hrs_tf.experiments.model_store.ModelStore` with training seed k, so RS-1-Adv's and Dropout-Adv's target and
MagNet's and RC's classifier are the same store's RS-1 / Dropout models (as in the paper: "we use the trained Dropout
model as the prediction model"). Every number is a JSON cell (:class:`hrs_tf.experiments.cells.CellStore`):

- ``table2``: per (scheme, model k), the test error under every decision rule that applies (single / MC average /
  voting for a stochastic model; single for a deterministic one; a decider's own: MagNet's rejection counts as an
  error, RC's vote over noisy copies), images in batches of ``batch_size`` (the paper's batch semantics of the
  Random Spiking layer) unless ``per_image``;
- ``stability``: the cells of :class:`randspike.experiments.stability.Study` over every model, grouped by scheme
  (Figures 1-2), assembled into ``stability/stability.json`` once all are computed.

Training model k of a scheme is a cell of its own (``model/<scheme> model=<k>``); the table2 and stability cells of a
model wait for the training cells it is made from, so :meth:`SchemeStudy.run` computes them on any executor
(:mod:`hrs_tf.experiments.execution`: in this process, or on Ray). The report (:mod:`.report`) puts the mean +- std
over the k models beside the paper's Table 2.
"""

import dataclasses
import os

import numpy as np

from hrs_tf import checks
from hrs_tf.errors import ConfigError
from hrs_tf.experiments.cells import CellStore, plan_with
from hrs_tf.experiments.executable import CellExperiment, CellList
from hrs_tf.experiments.execution import Cell, Needs, Recipe, execute
from hrs_tf.experiments.model_store import MODEL, ModelStore
from randspike import decision, schemes, training
from randspike.experiments import stability as stability_study

EXPERIMENTS = ("table2", "stability")
CONTENT_KEYS = ("dataset", "test_images", "passes", "batch_size", "per_image", "eval_seed")


@dataclasses.dataclass(frozen=True)
class Plan:
    """The scale of a run (the paper's in brackets)."""

    dataset: str
    schemes: tuple = tuple(name for _, name, _ in schemes.TABLE2)  # defense specs [the nine]
    models: int = 16  # trained models per scheme [16]
    epochs: int = None  # training epochs of every trained scheme, default the paper's [50 MNIST CNN, 200 WRN]
    magnet_epochs: int = None  # MagNet's autoencoders, default the paper's [100 MNIST, 400 others]
    test_images: int = 10000  # test images of Table 2 [10,000]
    passes: int = 10  # stochastic passes of MC average / voting [10]
    batch_size: int = decision.BATCH_SIZE
    per_image: bool = False
    eval_seed: int = 0
    settings: tuple = ()  # training settings shared by every scheme: ((key, value), ...) e.g. arch, train_images
    stability_images: int = 1000  # [1000]
    stability_draws: int = 20  # [20]
    gaussian_levels: tuple = None  # default: the data set's grid (MNIST 0..5, others 0..2.5)
    jpeg_qualities: tuple = tuple(range(10, 101, 10))
    experiments: tuple = EXPERIMENTS


def plan_for(dataset, **overrides):
    """The default plan of ``dataset`` with ``overrides`` (unknown keys refused, values checked)."""
    checks.choice(dataset, "dataset", ("mnist", "fashion_mnist", "cifar10"))
    overrides = training.with_paper_epochs(dataset, overrides)
    plan = plan_with(Plan, overrides, ("models", "epochs", "magnet_epochs", "test_images", "passes", "batch_size",
                                       "stability_images", "stability_draws"), dataset=dataset)
    for experiment in plan.experiments:
        checks.choice(experiment, "experiment", EXPERIMENTS)
    specs = [schemes.spec_of(s) for s in plan.schemes]
    if len({s.text for s in specs}) != len(specs):
        raise ConfigError(f"schemes {list(plan.schemes)} name one scheme twice")
    return dataclasses.replace(plan, schemes=tuple(s.text for s in specs))


def model_name(k, spec):
    """The name of model k of scheme ``spec`` (its training cell, its table2 cell, its stability model)."""
    return f"{spec.label} model={k}"


class StudyModels:
    """The k model stores of a study seen as one (what :class:`~hrs_tf.experiments.executable.CellList` and
    :class:`~hrs_tf.experiments.executable.CellExperiment` use): model ``<label> model=<k>`` is ``label`` of store k."""

    def __init__(self, stores):
        self.stores = stores

    def _split(self, name):
        label, _, k = name.rpartition(" model=")
        return int(k), label

    @staticmethod
    def _key(k, key):
        return f"{MODEL}/{key.split('/', 1)[1]} model={k}"

    def requires(self, name):
        k, label = self._split(name)
        return tuple(self._key(k, key) for key in self.stores[k].requires(label))

    def model_cells(self, names, needs=Needs()):
        cells = []
        for name in names:
            k, label = self._split(name)
            cells += [Cell(MODEL, f"{cell.name} model={k}", needs=cell.needs,
                           after=tuple(self._key(k, key) for key in cell.after))
                      for cell in self.stores[k].model_cells([label], needs)]
        return cells

    def made(self, name):
        k, label = self._split(name)
        return self.stores[k].made(label)

    def get(self, name):
        k, label = self._split(name)
        return self.stores[k].get(label)

    def reseed(self, seed):
        for store in self.stores:
            store.reseed(seed)

    def refresh(self):
        for store in self.stores:
            store.refresh()


class SchemeStudy(CellExperiment):
    """Table 2 and stability of ``plan`` on ``dataset`` in ``work_dir``."""

    def __init__(self, dataset, plan, work_dir, log=print):
        if plan.dataset != dataset.name:
            raise ConfigError(f"the plan is for {plan.dataset!r}, the data set is {dataset.name!r}")
        self.dataset, self.plan, self.work_dir, self.log = dataset, plan, work_dir, log
        self.specs = [schemes.spec_of(text) for text in plan.schemes]
        self.read_only = False
        self.stores = [self._store(k) for k in range(plan.models)]
        self.models = StudyModels(self.stores)
        self.cells = CellStore(work_dir, log, seed=plan.eval_seed, reseed=[self.models.reseed])
        self._stability = None

    def _store(self, k):
        store = ModelStore(self.dataset, os.path.join(self.work_dir, f"model_{k}"), seed=k,
                           settings=dict(self.plan.settings), log=self.log)
        for spec in self.specs:
            epochs = self.plan.magnet_epochs if spec.name == "magnet" else self.plan.epochs
            store.add(spec.label, spec, None if spec.make == "wrapped" else epochs)
        source = schemes.spec_of("rs_dropout")
        if any(spec.source() == source for spec in self.specs) and store.name_of(source) is None:
            store.add(source.label, source, self.plan.epochs)
        settings = {"dataset": self.dataset.name, "plan_settings": [list(p) for p in self.plan.settings]}
        store.check_run(store.dir.rsplit(os.sep, 1)[0], settings, ("dataset", "plan_settings"), "a Random Spiking study")
        return store

    def check(self):
        from hrs_tf.experiments.cells import check_settings

        check_settings(self.work_dir, {"dataset": self.dataset.name, "test_images": self.plan.test_images,
                                       "passes": self.plan.passes, "batch_size": self.plan.batch_size,
                                       "per_image": self.plan.per_image, "eval_seed": self.plan.eval_seed},
                       CONTENT_KEYS, "a Random Spiking study")

    def classifier(self, k, spec):
        """Model k of scheme ``spec`` as its decision needs it (a Keras model or a Decider)."""
        store = self.stores[k]
        model = store.get(spec.label)
        return schemes.load(spec, store.file(spec.label), model, self.dataset.name)

    def errors(self, k, spec):
        """The table2 cell of model k of ``spec`` (a spec or its text): test error (%) under every rule that applies."""
        spec = schemes.spec_of(spec)

        def compute():
            model = self.classifier(k, spec)
            x = self.dataset.x_test[:self.plan.test_images]
            y = self.dataset.y_test[:self.plan.test_images]
            result = {"scheme": spec.label, "spec": spec.text, "model": k, "images": len(x), "errors": {},
                      "rejected": {}}
            by_rule = decision.labels_by_rule(model, x, schemes.rules_of(model), self.plan.passes,
                                              self.plan.batch_size, self.plan.per_image, seed=self.plan.eval_seed)
            for rule, predicted in by_rule.items():
                result["errors"][rule] = 100.0 * float(np.mean(predicted != y))
                result["rejected"][rule] = 100.0 * float(np.mean(predicted == decision.REJECTED))
            return result

        name = model_name(k, spec)
        if self.read_only and self.cells.stored("table2", name) is None:
            raise ConfigError(f"cell table2/{name} is not computed yet; run without --report_only first")
        return self.cells.cell("table2", name, compute)

    def table2(self):
        """Rows {scheme, spec, rule, mean, std, models, paper rule} over the k models (std with ddof 1)."""
        rows = []
        for spec in self.specs:
            cells = [self.errors(k, spec) for k in range(self.plan.models)]
            for rule in [r for r in decision.RULES if r in cells[0]["errors"]]:  # one order, stored or fresh
                values = [c["errors"][rule] for c in cells]
                rows.append({"scheme": spec.label, "paper_scheme": schemes.paper_name(spec), "spec": spec.text, "rule": rule,
                             "paper_rule": rule == schemes.paper_rule(spec), "mean": float(np.mean(values)),
                             "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                             "models": len(values), "errors": values,
                             "rejected": float(np.mean([c["rejected"][rule] for c in cells]))})
        return rows

    def stability_study(self):
        """The :class:`randspike.experiments.stability.Study` of every model, grouped by scheme."""
        if self._stability is None:
            models, groups = {}, {}
            for spec in self.specs:
                for k in range(self.plan.models):
                    name = model_name(k, spec)
                    models[name] = (lambda k=k, spec=spec: self.classifier(k, spec))
                    groups[name] = spec.label
            p = self.plan
            self._stability = stability_study.Study(
                models, self.dataset.x_test, os.path.join(self.work_dir, "stability"), dataset=self.dataset.name,
                schemes=groups, num_images=p.stability_images, gaussian_levels=p.gaussian_levels,
                jpeg_qualities=p.jpeg_qualities, draws=p.stability_draws, passes=p.passes, batch_size=p.batch_size,
                per_image=p.per_image, seed=p.eval_seed, log=self.log, reseed=[self.models.reseed])
        return self._stability

    def stability_cell(self, name, perturbation=None, level=None):
        """Model ``name``'s clean stability cell (no ``perturbation``), else its cell at ``level``."""
        study = self.stability_study()
        return study.clean(name) if perturbation is None else study.measure(name, perturbation, level)

    def stability(self):
        """The stability results of every model (missing cells computed here), written as ``stability.json``."""
        return self.stability_study().finish()

    # -- cells ------------------------------------------------------------------------------------------
    def recipe(self):
        """How a worker builds this study (an absolute work folder: a worker may start elsewhere)."""
        return Recipe(SchemeStudy, dataset=self.dataset, plan=self.plan, work_dir=os.path.abspath(self.work_dir))

    def cell_plan(self):
        """Model by model (k = 0, 1, ...): the training cells of every scheme's model k, then their table2 cells,
        then their stability cells (the clean one first), each waiting for the training of the model it evaluates.
        A run stopped early thus holds whole, evaluated models of every scheme: ``--models`` set to the models
        finished reports them."""
        self.models.refresh()
        todo = CellList(self.models)
        study = self.stability_study() if "stability" in self.plan.experiments else None
        for k in range(self.plan.models):
            names = [model_name(k, spec) for spec in self.specs]
            todo.add_models(names)
            if "table2" in self.plan.experiments:
                for spec, name in zip(self.specs, names):
                    todo.result("table2", name, "errors", k, spec.text, models=[name])
            if study is not None:
                for spec, name in zip(self.specs, names):  # a scheme's cells of one perturbation take alike times
                    clean = stability_study.cell_name(name, "clean")
                    todo.result(stability_study.EXPERIMENT, clean, "stability_cell", name, models=[name],
                                estimate=f"{spec.label}|clean")
                    for perturbation, level in study.work:
                        todo.result(stability_study.EXPERIMENT, stability_study.cell_name(name, perturbation, level),
                                    "stability_cell", name, perturbation, level, models=[name],
                                    after=[f"{stability_study.EXPERIMENT}/{clean}"],
                                    estimate=f"{spec.label}|{perturbation}")
        return todo.cells

    def done(self, cell):
        if cell.kind == stability_study.EXPERIMENT:  # the stability study's own cell folder
            return self.stability_study().stored(cell.name)
        return super().done(cell)

    def run(self, executor=None):
        """Every missing cell of the plan's experiments on ``executor`` (default: in this process), then the
        results: {experiment: result}."""
        self.check()
        execute(self, executor, self.log)
        results = {}
        if "table2" in self.plan.experiments:
            results["table2"] = self.table2()
        if "stability" in self.plan.experiments:
            results["stability"] = self.stability()
        return results

    def collect(self):
        """The results of finished cells only (ConfigError naming the first missing one): the report's input. The
        stability results are assembled from the stored cells of this plan's models (``stability.json`` rewritten),
        so a plan of fewer models than a run's reports exactly those."""
        self.read_only = True
        results = {}
        if "table2" in self.plan.experiments:
            results["table2"] = self.table2()
        if "stability" in self.plan.experiments:
            study = self.stability_study()
            names = [stability_study.cell_name(name, "clean") for name in study.models]
            names += [stability_study.cell_name(name, *work) for name in study.models for work in study.work]
            missing = next((name for name in names if not study.stored(name)), None)
            if missing is not None:
                raise ConfigError(f"cell {stability_study.EXPERIMENT}/{missing} is not computed yet; run without "
                                  "--report_only first")
            results["stability"] = study.finish()
        return results

    def scale_lines(self):
        """What each scheme's models were made with, read from their records (the report's scale section)."""
        lines = []
        summary = self.training_summary()
        for spec in self.specs:
            made = [r for r in summary[spec.label] if r]
            if spec.make == "wrapped":
                source = spec.source()
                lines.append(f"{spec.label}: `{spec.text}`, made from the same seed's {source.label} model without "
                             "training")
                continue
            if not made:
                lines.append(f"{spec.label}: not trained yet")
                continue
            r = made[0]
            what = r.get("model")
            if what is None:  # installed (MagNet): described by its spec and its source
                source = spec.source()
                what = f"`{spec.text}`" + (f" on the same seed's {source.label} model" if source else "")
            recipe = r.get("recipe") or f"{r.get('epochs', '?')} epochs"
            extra = ""
            if r.get("adversarial_examples"):
                a = r["adversarial_examples"]
                extra = f"; adversarial examples: {a.get('kept', '?')} kept of {a.get('generated', '?')} generated"
            images = r.get("train_images")
            lines.append(f"{spec.label}: {what}; {recipe}" + (f"; trained on {images} images" if images else "") +
                         f"{extra} ({len(made)} model(s))")
        return lines

    def training_summary(self):
        """Per scheme: the epochs and training images recorded by its models (for the report's scale line), as
        recorded by whichever process trained or loaded them."""
        self.models.refresh()
        summary = {}
        for spec in self.specs:
            records = []
            for store in self.stores:
                path = store.file(spec.label)
                record = spec.defense.record(path) if path and os.path.exists(path) else None
                records.append(record or {})
            summary[spec.label] = records
        return summary
