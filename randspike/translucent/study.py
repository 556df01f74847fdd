"""The translucent-box evaluation of the Random Spiking paper on one data set (sections 3.2, 5.2, 5.4, 5.5), as
resumable cells; any registered defense can be a scheme.

Per scheme, a fleet of ``models`` surrogates (:class:`hrs_tf.experiments.fleet.Fleet`: seeds and random halves of
the training data) in ``<work_dir>/fleets/<scheme>/``. The same first ``images`` test images and the same random
targets are attacked for every scheme, at every confidence K of the grid, in chunks of ``attack_batch`` images.
The cells (:meth:`TranslucentStudy.cell_plan`, computed on any executor by :meth:`TranslucentStudy.run`):

- ``fleet`` cells: the training of each fleet member (``<scheme> model <k>``), independent of each other, except
  that a wrapped or installed scheme's member k is made from member k of its source's fleet when the plan has it
  (RC's and MagNet's Dropout; :meth:`TranslucentStudy._source_fleet`) and waits for it;
- ``generate`` cells: C&W against the ``sources`` first models at once (Multi-t) and against each of the
  ``single_sources`` first models alone (Single) (:mod:`.examples`), after those models' training; the 8-bit
  images go to ``<work_dir>/examples/<cell>.npz`` before the cell's JSON marks them done;
- ``judge`` cells: the labels that the models of a target scheme (decision rule of its Table 2 row: MC average,
  voting, MagNet's rejection) give to the found examples of one generate cell: Single examples on their own
  scheme's Single targets, Multi-t examples on the held-out models of **every** scheme (Figure 4); after their
  generate cell and the target models' training.

Every generate and judge cell starts from randomness of its own (the cell's seed under the plan's ``seed``: the
global seeds, and the seed generators of every fleet model and decision it uses), so it draws the same in any
process and whichever cells were computed before it.

:meth:`TranslucentStudy.results` turns them into Tables 4-5 (white-box L2 at K = 0), Figure 3 (transfer rate per
L2 bucket of the three strategies) and Figure 4 (passing rate of the validation per (source, target) scheme and
bucket) with :mod:`.strategies`, and each held-out model's share of examples that reach their target (``held_out``).
"""

import dataclasses
import os

import numpy as np

from hrs_tf import checks
from hrs_tf.errors import ConfigError
from hrs_tf.experiments.cells import CellStore, check_settings, plan_with, slug
from hrs_tf.experiments.execution import Cell, Recipe, cell_seed, execute
from hrs_tf.experiments.fleet import FLEET, Fleet
from hrs_tf.layers import stochastic
from randspike import decision, schemes, training
from randspike.translucent import examples, strategies

# Confidence grids of Figure 3 (section 5.4: "slightly lower confidence values than in Sec. 5.1.1": {0, 10, 20, 30}
# Fashion-MNIST, {0, 20, 40, 60} CIFAR-10). MNIST's is not given: Table 3's {0, 5, 10, 15}.
CONFIDENCES = {"mnist": (0.0, 5.0, 10.0, 15.0), "fashion_mnist": (0.0, 10.0, 20.0, 30.0),
               "cifar10": (0.0, 20.0, 40.0, 60.0)}
CONTENT_KEYS = ("dataset", "images", "seed", "attack", "passes", "batch_size", "roles", "fleet")


@dataclasses.dataclass(frozen=True)
class Plan:
    """The scale of a run (the paper's in brackets)."""

    dataset: str
    schemes: tuple = tuple(name for _, name, _ in schemes.TABLE2)  # [the nine of Table 2]
    models: int = 16  # fleet size per scheme [16]
    sources: int = 8  # Multi-t [8]
    single_sources: int = 4  # Single [4]
    threshold: int = 5  # validators to fool [5 of 7]
    epochs: int = None  # training epochs per model, default the paper's [50 MNIST CNN, 200 WRN]
    magnet_epochs: int = None  # default the paper's [100 MNIST, 400 others]
    train_fraction: float = 0.5  # [a random half]
    settings: tuple = ()  # training settings ((key, value), ...), e.g. train_images
    images: int = 1000  # first test images attacked [not stated: "thousands of examples"]
    confidences: tuple = None  # default CONFIDENCES[dataset]
    cw_iterations: int = 1000  # [1000]
    cw_search_steps: int = 9  # [9]
    cw_learning_rate: float = 1e-2  # [1e-2]
    cw_initial_const: float = 1e-3  # [1e-3]
    eot: int = 4  # stochastic passes per C&W step on stochastic surrogates [not stated]
    attack_batch: int = 100  # images per C&W call (one generate cell)
    passes: int = decision.PASSES  # MC average / voting passes of the targets [10]
    batch_size: int = decision.BATCH_SIZE  # images judged together (random spiking's batch range)
    edges: tuple = None  # L2 bucket edges, default 4 equal buckets up to Table 3's cut-off
    seed: int = 0  # fleets' seed and the targets' draw


def plan_for(dataset, **overrides):
    """The default plan of ``dataset`` with ``overrides`` (None keeps a default; unknown keys refused)."""
    checks.choice(dataset, "dataset", tuple(CONFIDENCES))
    overrides = training.with_paper_epochs(dataset, overrides)
    plan = plan_with(Plan, overrides, ("epochs", "magnet_epochs", "images", "cw_iterations", "cw_search_steps", "eot",
                                       "attack_batch", "passes", "batch_size"), dataset=dataset)
    checks.positive(plan.cw_learning_rate, "cw_learning_rate")
    checks.positive(plan.cw_initial_const, "cw_initial_const")
    if not 0.0 < float(plan.train_fraction) <= 1.0:
        raise ConfigError(f"train_fraction={plan.train_fraction} must be in (0, 1]")
    strategies.Roles(plan.models, plan.sources, plan.single_sources, plan.threshold)  # refuses impossible roles
    confidences = tuple(float(checks.nonnegative(k, "confidence")) for k in (plan.confidences or CONFIDENCES[dataset]))
    if not confidences or len(set(confidences)) != len(confidences):
        raise ConfigError(f"confidences {list(confidences)} must be distinct values")
    edges = strategies.check_edges(plan.edges or strategies.default_edges(dataset))
    specs = [schemes.spec_of(s) for s in plan.schemes]
    if len({s.text for s in specs}) != len(specs):
        raise ConfigError(f"schemes {list(plan.schemes)} name one scheme twice")
    if len({s.label for s in specs}) != len(specs):
        raise ConfigError(f"schemes {[s.text for s in specs]} share a label (their fleets and cells are named by it)")
    return dataclasses.replace(plan, schemes=tuple(s.text for s in specs), confidences=confidences, edges=edges)


class TranslucentStudy:
    """The translucent-box evaluation of ``plan`` on ``dataset`` in ``work_dir`` (module docstring)."""

    def __init__(self, dataset, plan, work_dir, log=print):
        if plan.dataset != dataset.name:
            raise ConfigError(f"the plan is for {plan.dataset!r}, the data set is {dataset.name!r}")
        if plan.images > len(dataset.x_test):
            raise ConfigError(f"images={plan.images} exceeds the {len(dataset.x_test)} test images")
        self.dataset, self.plan, self.work_dir, self.log = dataset, plan, work_dir, log
        self.roles = strategies.Roles(plan.models, plan.sources, plan.single_sources, plan.threshold)
        self.specs = [schemes.spec_of(text) for text in plan.schemes]
        self._spec = {spec.label: spec for spec in self.specs}
        self.cells = CellStore(work_dir, log, seed=plan.seed, reseed=[self.reseed])
        self.read_only = False
        self.fleets = {}
        for spec in sorted(self.specs, key=lambda s: s.source() is not None):  # sources' fleets first
            self.fleets[spec.label] = self._fleet(spec)
        self.fleets = {spec.label: self.fleets[spec.label] for spec in self.specs}
        self._classifiers = {}
        self._seed = None  # the current cell's seed (see reseed)
        self._examples = {}  # generate cell name -> its loaded examples
        x = dataset.x_test[:plan.images]
        self.x, self.y = x, dataset.y_test[:plan.images]
        self.targets = examples.random_targets(self.y, dataset.num_classes, plan.seed)

    def _fleet(self, spec):
        epochs = self.plan.magnet_epochs if spec.name == "magnet" else self.plan.epochs
        return Fleet(self.dataset, spec, os.path.join(self.work_dir, "fleets", slug(spec.label.lower())),
                     models=self.plan.models, epochs=None if spec.make == "wrapped" else epochs,
                     source_epochs=None if spec.source() is None else self.plan.epochs,
                     train_fraction=self.plan.train_fraction, seed=self.plan.seed, settings=dict(self.plan.settings),
                     log=self.log, source_fleet=self._source_fleet(spec))

    def _source_fleet(self, spec):
        """The study's fleet of ``spec``'s source (a wrapped or installed scheme's, e.g. RC's or MagNet's Dropout
        model) if it has one: the same seed, halves and recipe give the same models, which are not trained twice."""
        source = spec.source()
        return next((f for f in self.fleets.values() if source is not None and f.spec == source), None)

    def check(self):
        p = self.plan
        check_settings(self.work_dir, {
            "dataset": self.dataset.name, "images": p.images, "seed": p.seed,
            "attack": {"iterations": p.cw_iterations, "search_steps": p.cw_search_steps,
                       "learning_rate": p.cw_learning_rate, "initial_const": p.cw_initial_const, "eot": p.eot,
                       "attack_batch": p.attack_batch},
            "passes": p.passes, "batch_size": p.batch_size,
            "roles": [p.models, p.sources, p.single_sources],
            "fleet": {"epochs": p.epochs, "magnet_epochs": p.magnet_epochs, "train_fraction": p.train_fraction,
                      "settings": [list(s) for s in p.settings]}}, CONTENT_KEYS, "a translucent-box study")

    # -- models --------------------------------------------------------------------------------------------
    def classifier(self, spec, k):
        """Model k of ``spec``'s fleet as its decision needs it (a Keras model or a Decider), loaded once."""
        key = (spec.label, k)
        if key not in self._classifiers:
            fleet = self.fleets[spec.label]
            model = fleet.model(k)  # made first: the file is known once the member is finished
            self._classifiers[key] = schemes.load(spec, fleet.file(k), model, self.dataset.name)
            self._reseed_classifier(key)
        return self._classifiers[key]

    def reseed(self, seed):
        """Restarts the seed generators of every fleet model and decision used here (and of those used from now
        on) from ``seed`` (the CellStore's callback: a cell draws the same whichever cells ran before it)."""
        self._seed = int(seed)
        for fleet in self.fleets.values():
            fleet.reseed(seed)
        for key in self._classifiers:
            self._reseed_classifier(key)

    def _reseed_classifier(self, key):
        """A decision's own layers too (region-based noise, MagNet's composite), after its fleet model's."""
        if self._seed is None:
            return
        classifier = self._classifiers[key]
        model = classifier.model if isinstance(classifier, decision.Decider) else classifier
        stochastic.reseed(model, cell_seed(f"{key[0]} model {key[1]}", self._seed))

    # -- cells ---------------------------------------------------------------------------------------------
    def chunks(self):
        n, b = self.plan.images, self.plan.attack_batch
        return [(a, min(a + b, n)) for a in range(0, n, b)]

    def groups(self):
        """The attacked groups of a fleet: ``multi`` (the Multi-t sources) and ``single<j>`` (each Single source)."""
        return ["multi"] + [f"single{j}" for j in range(self.roles.single_sources)]

    def _sources(self, group):
        return list(range(self.roles.sources)) if group == "multi" else [int(group[len("single"):])]

    @staticmethod
    def generate_name(spec, group, confidence, chunk):
        return f"{spec.label} {group} K={confidence:g} images={chunk[0]}-{chunk[1]}"

    def _example_path(self, name):
        return os.path.join(self.work_dir, "examples", slug(name) + ".npz")

    def _require(self, experiment, name):
        if self.read_only and self.cells.stored(experiment, name) is None:
            raise ConfigError(f"cell {experiment}/{name} is not computed yet; run without --report_only first")

    def generated(self, spec, group, confidence, chunk):
        """The generate cell (module docstring) and its examples ``{adv, found, l2, targets, images}``."""
        name = self.generate_name(spec, group, confidence, chunk)
        path = self._example_path(name)
        a, b = chunk

        def compute():
            p = self.plan
            surrogates = [examples.attack_view(self.classifier(spec, k)) for k in self._sources(group)]
            made = examples.generate(surrogates, self.x[a:b], self.targets[a:b], confidence, eot=p.eot,
                                     learning_rate=p.cw_learning_rate, binary_search_steps=p.cw_search_steps,
                                     max_iterations=p.cw_iterations, initial_const=p.cw_initial_const)
            made.update(targets=self.targets[a:b], images=np.arange(a, b))
            examples.save(path, made)
            found = made["l2"][made["found"]]
            self.log(f"  {name}: {int(made['found'].sum())}/{b - a} found, mean L2 "
                     f"{float(found.mean()) if found.size else float('nan'):.3f}")
            return {"scheme": spec.label, "spec": spec.text, "group": group, "confidence": confidence,
                    "images": [a, b], "found": int(made["found"].sum()), "file": os.path.relpath(path, self.work_dir)}

        self._require("generate", name)
        cell = self.cells.cell("generate", name, compute)
        if name not in self._examples:  # read once: every judge cell and measurement of these examples reuses it
            self._examples[name] = examples.load(os.path.join(self.work_dir, cell["file"]))
        return cell, self._examples[name]

    def target_models(self, source_spec, group, target_spec):
        """The fleet models of ``target_spec`` that judge the examples of ``group`` of ``source_spec``."""
        if group == "multi":
            return list(self.roles.held_out)
        if target_spec.label != source_spec.label:
            raise ConfigError("Single examples are judged on their own scheme's models only")
        return list(self.roles.single_targets(int(group[len("single"):])))

    def judged(self, source_spec, group, confidence, chunk, target_spec):
        """The judge cell: labels of ``target_spec``'s models on the found examples of one generate cell."""
        _, made = self.generated(source_spec, group, confidence, chunk)
        name = self.generate_name(source_spec, group, confidence, chunk) + f" on {target_spec.label}"

        def compute():
            found = np.flatnonzero(made["found"])
            x = examples.as_float(made["adv"][found])
            labels = {}
            for k in self.target_models(source_spec, group, target_spec):
                model = self.classifier(target_spec, k)
                rule = decision.rule_or_error(schemes.paper_rule(target_spec), model)
                labels[str(k)] = (decision.labels(model, x, rule=rule, passes=self.plan.passes,
                                                  batch_size=self.plan.batch_size).tolist() if len(x) else [])
            return {"source": source_spec.label, "target": target_spec.label, "group": group,
                    "confidence": confidence, "examples": found.tolist(), "labels": labels}

        self._require("judge", name)
        return self.cells.cell("judge", name, compute), made

    # -- measurements ----------------------------------------------------------------------------------------
    def _judgements(self, source_spec, group, target_spec):
        """Over the confidence grid and the chunks: (L2 of the found examples, their attack targets, the labels the
        target models gave them (target models, examples))."""
        l2, targets, labels = [], [], []
        for confidence in self.plan.confidences:
            for chunk in self.chunks():
                cell, made = self.judged(source_spec, group, confidence, chunk, target_spec)
                found = np.asarray(cell["examples"], np.int64)
                l2.append(made["l2"][found])
                targets.append(made["targets"][found])
                labels.append(np.stack([np.asarray(cell["labels"][str(k)], np.int64).reshape(-1)
                                        for k in self.target_models(source_spec, group, target_spec)]))
        return np.concatenate(l2), np.concatenate(targets), np.concatenate(labels, axis=1)

    def white_box(self, spec, groups):
        """Tables 4-5: the L2 of C&W at K = 0 against the source(s) of ``groups`` (Single: its sources' examples
        pooled): {mean, std, found, attacked}; None when K = 0 is not in the grid."""
        if 0.0 not in self.plan.confidences:
            return None
        l2, attacked = [], 0
        for group in groups:
            for chunk in self.chunks():
                _, made = self.generated(spec, group, 0.0, chunk)
                l2.append(made["l2"][made["found"]])
                attacked += len(made["found"])
        l2 = np.concatenate(l2)
        mean, std = strategies.mean_std(l2)
        return {"mean": mean, "std": std, "found": int(l2.size), "attacked": attacked}

    # -- the executor protocol ------------------------------------------------------------------------------------
    def recipe(self):
        """How a worker builds this study (absolute work folder)."""
        return Recipe(TranslucentStudy, dataset=self.dataset, plan=self.plan, work_dir=os.path.abspath(self.work_dir))

    def cell_plan(self):
        """Every cell in local order: fleet members, ``generate`` cells after their source models, ``judge`` cells
        after their examples and target models (``args``: kind, labels, group, K, chunk of :meth:`judged`)."""
        todo = []
        for spec in self.specs:
            todo += self.fleets[spec.label].member_cells(after_source=True)
        for spec in self.specs:
            fleet = self.fleets[spec.label]
            for group in self.groups():
                after = tuple(fleet.cell_key(k) for k in self._sources(group))
                for confidence in self.plan.confidences:
                    todo += [Cell("generate", self.generate_name(spec, group, confidence, chunk),
                                  args=("generate", spec.label, group, confidence, chunk), after=after)
                             for chunk in self.chunks()]
        for spec in self.specs:
            for group in self.groups():
                targets = self.specs if group == "multi" else [spec]
                for confidence in self.plan.confidences:
                    for chunk in self.chunks():
                        source = "generate/" + self.generate_name(spec, group, confidence, chunk)
                        for target in targets:
                            models = self.target_models(spec, group, target)
                            after = (source,) + tuple(self.fleets[target.label].cell_key(k) for k in models)
                            todo.append(Cell("judge", self.generate_name(spec, group, confidence, chunk)
                                             + f" on {target.label}",
                                             args=("judge", spec.label, group, confidence, chunk, target.label),
                                             after=after))
        return todo

    def done(self, cell):
        if cell.kind == FLEET:
            return self.fleets[cell.args[0]].done(cell)
        return self.cells.stored(cell.kind, cell.name) is not None

    def compute(self, cell):
        if cell.kind == FLEET:
            self.fleets[cell.args[0]].compute(cell)
            return
        kind, label, group, confidence, chunk, *target = cell.args
        args = (self._spec[label], group, confidence, tuple(chunk)) + tuple(self._spec[t] for t in target)
        (self.generated if kind == "generate" else self.judged)(*args)

    def run(self, executor=None):
        """Every missing cell of the plan (fleets first) on ``executor`` (default: in this process, in order; a
        progress line per cell), then the fleets' manifests; returns :meth:`results`."""
        self.check()
        for spec in self.specs:
            fleet = self.fleets[spec.label]
            self.log(f"fleet {spec.label} ({spec.text}): {len(fleet.finished())} of {fleet.models} model(s) made")
        try:
            execute(self, executor, self.log)
        finally:
            for fleet in self.fleets.values():
                fleet.write_manifest()
        return self.results()

    def collect(self):
        """The results of finished cells only (ConfigError naming the first missing one): the report's input. Cells
        made with other settings (attack, fleets, roles) are refused as :meth:`run` refuses them."""
        self.check()
        self.read_only = True
        return self.results()

    def results(self):
        edges = self.plan.edges
        out = {"edges": list(edges), "schemes": [s.label for s in self.specs], "tables": {}, "figure3": {},
               "figure4": {}, "counts": {}, "outcomes": {}, "single_outcomes": {}, "held_out": {}}
        for spec in self.specs:
            out["tables"][spec.label] = {"single": self.white_box(spec, self.groups()[1:]),
                                         "multi": self.white_box(spec, ["multi"])}
            figure = {}
            # every Single source's examples meet the same targets: pool them
            single_l2, single_targets, single_labels = (
                np.concatenate(part, axis=-1) for part in zip(*[self._judgements(spec, g, spec)
                                                                for g in self.groups()[1:]]))
            figure[strategies.SINGLE] = strategies.transfer_by_bucket(_fooled(single_labels, single_targets),
                                                                      single_l2, edges)
            out["single_outcomes"][spec.label] = strategies.outcome_shares(single_labels, single_targets,
                                                                         l2=single_l2, edges=edges)
            multi_l2, multi_targets, multi_labels = self._judgements(spec, "multi", spec)
            multi_fooled = _fooled(multi_labels, multi_targets)
            figure[strategies.MULTI] = strategies.transfer_by_bucket(multi_fooled, multi_l2, edges)
            validated = strategies.validated_by_bucket(multi_fooled, multi_l2, edges, self.roles.threshold)
            figure[strategies.VALIDATED] = validated["transfer"]
            out["counts"][spec.label] = {
                strategies.SINGLE: strategies.counts_by_bucket(single_l2, edges),
                strategies.MULTI: strategies.counts_by_bucket(multi_l2, edges),
                "passed": [sum(r["passed"][b] for r in validated["rotations"]) for b in range(len(edges) - 1)]}
            out["figure3"][spec.label] = figure
            out["figure4"][spec.label], out["outcomes"][spec.label] = {}, {}
            for target in self.specs:
                t_l2, t_targets, t_labels = self._judgements(spec, "multi", target)
                t_fooled = _fooled(t_labels, t_targets)
                v = strategies.validated_by_bucket(t_fooled, t_l2, edges, self.roles.threshold)
                out["figure4"][spec.label][target.label] = {"passing": v["passing"], "transfer": v["transfer"]}
                out["outcomes"][spec.label][target.label] = strategies.outcome_shares(t_labels, t_targets,
                                                                                    l2=t_l2, edges=edges)
                strategies.count_by_model(out["held_out"].setdefault(target.label, {}),
                                          self.target_models(spec, "multi", target), t_fooled)
        out["figure3"]["mean"] = {
            s: [strategies.mean_of_defined([out["figure3"][spec.label][s][b] for spec in self.specs])
                for b in range(len(edges) - 1)] for s in strategies.STRATEGIES}
        return out


def _fooled(labels, targets):
    """(target models, examples): did each model's label (its decision rule's; a rejection never) hit the target?"""
    return np.stack([decision.attack_succeeded(row, targets, targeted=True) for row in labels])
