"""Table 2 and the stability study of the Random Spiking paper on one data set, resumable.

k independently trained models per scheme (paper 16): model k of every scheme lives in ``<work_dir>/model_<k>/``, a
:class:`hrs_tf.experiments.model_store.ModelStore` with training seed k, so RS-1-Adv's and Dropout-Adv's target and
MagNet's and RC's classifier are the same store's RS-1 / Dropout models (as in the paper: "we use the trained Dropout
model as the prediction model"). Every number is a JSON cell (:class:`hrs_tf.experiments.cells.CellStore`):

- ``table2``: per (scheme, model k), the test error under every decision rule that applies (single / MC average /
  voting for a stochastic model; single for a deterministic one; a decider's own: MagNet's rejection counts as an
  error, RC's vote over noisy copies), images in batches of ``batch_size`` (the paper's batch semantics of the
  Random Spiking layer) unless ``per_image``;
- ``stability``: :func:`randspike.experiments.stability.run` over every model, grouped by scheme (Figures 1-2).

The report (:mod:`.report`) puts the mean +- std over the k models beside the paper's Table 2.
"""

import dataclasses
import os

import numpy as np

from hrs_tf import checks
from hrs_tf.errors import ConfigError
from hrs_tf.experiments.cells import CellStore, plan_with
from hrs_tf.experiments.model_store import ModelStore
from randspike import decision, schemes, training

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


class SchemeStudy:
    """Table 2 and stability of ``plan`` on ``dataset`` in ``work_dir``."""

    def __init__(self, dataset, plan, work_dir, log=print):
        if plan.dataset != dataset.name:
            raise ConfigError(f"the plan is for {plan.dataset!r}, the data set is {dataset.name!r}")
        self.dataset, self.plan, self.work_dir, self.log = dataset, plan, work_dir, log
        self.specs = [schemes.spec_of(text) for text in plan.schemes]
        self.cells = CellStore(work_dir, log)
        self.read_only = False
        self.stores = [self._store(k) for k in range(plan.models)]

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
        """The table2 cell of model k of ``spec``: test error (%) under every rule that applies."""
        def compute():
            model = self.classifier(k, spec)
            x = self.dataset.x_test[:self.plan.test_images]
            y = self.dataset.y_test[:self.plan.test_images]
            result = {"scheme": spec.label, "spec": spec.text, "model": k, "images": len(x), "errors": {},
                      "rejected": {}}
            for rule in schemes.rules_of(model):
                predicted = decision.labels(model, x, rule, self.plan.passes, self.plan.batch_size,
                                            self.plan.per_image, seed=self.plan.eval_seed)
                result["errors"][rule] = 100.0 * float(np.mean(predicted != y))
                result["rejected"][rule] = 100.0 * float(np.mean(predicted == decision.REJECTED))
            return result

        name = f"{spec.label} model={k}"
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

    def stability(self):
        from randspike.experiments import stability

        models, groups = {}, {}
        for spec in self.specs:
            for k in range(self.plan.models):
                name = f"{spec.label} model={k}"
                models[name] = (lambda k=k, spec=spec: self.classifier(k, spec))
                groups[name] = spec.label
        return stability.run(models, self.dataset.x_test, os.path.join(self.work_dir, "stability"),
                             dataset=self.dataset.name, schemes=groups, num_images=self.plan.stability_images,
                             gaussian_levels=self.plan.gaussian_levels, jpeg_qualities=self.plan.jpeg_qualities,
                             draws=self.plan.stability_draws, passes=self.plan.passes,
                             batch_size=self.plan.batch_size, per_image=self.plan.per_image,
                             seed=self.plan.eval_seed, log=self.log)

    def run(self):
        """Every experiment of the plan; returns {experiment: result}."""
        self.check()
        results = {}
        if "table2" in self.plan.experiments:
            results["table2"] = self.table2()
        if "stability" in self.plan.experiments:
            results["stability"] = self.stability()
        return results

    def collect(self):
        """The results of finished cells only (ConfigError naming the first missing one): the report's input."""
        from hrs_tf import fileio

        self.read_only = True
        results = {}
        if "table2" in self.plan.experiments:
            results["table2"] = self.table2()
        path = os.path.join(self.work_dir, "stability", "stability.json")
        if "stability" in self.plan.experiments:
            if not os.path.exists(path):
                raise ConfigError(f"{path} does not exist yet; run without --report_only first")
            results["stability"] = fileio.read_json(path)
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
        """Per scheme: the epochs and training images recorded by its models (for the report's scale line)."""
        summary = {}
        for spec in self.specs:
            records = []
            for store in self.stores:
                path = store.file(spec.label)
                record = spec.defense.record(path) if path and os.path.exists(path) else None
                records.append(record or {})
            summary[spec.label] = records
        return summary
