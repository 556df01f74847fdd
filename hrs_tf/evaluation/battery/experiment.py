"""The battery as resumable cells on any executor (:mod:`hrs_tf.experiments.execution`).

Cells (``<work_dir>/cells/<kind>/<name>.json``):

- ``clean/<defense>``: the defense's decision on the first N test images (correct per image), what its layers say
  (stochastic, BPDA layers, decider) and, for a deterministic model, the spread of its logits between two passes;
- ``transfer/<threat>``: PGD-CE examples of the undefended model (``transfer_from``), saved beside the cell as
  ``transfer/<threat>.npz`` and judged on every defense by the ``transfer`` attack;
- ``attack/<defense>|<threat>|<attack>``: one battery attack (:mod:`.attacks`): robust per image, cost, trace;
- ``unbounded/<defense>``: PGD-margin at an unbounded L-inf radius and which images another decision shows to be
  reachable (the ``unbounded`` check of :mod:`.summary`).

Every cell starts from a seed of its own (:class:`hrs_tf.experiments.cells.CellStore`) and restarts the seed
generators of the defense's models, so a cell's result does not depend on the order or the process it ran in.
"""

import dataclasses
import os
import types

import numpy as np

from hrs_tf import fileio
from hrs_tf.errors import ConfigError
from hrs_tf.evaluation.battery import attacks as battery_attacks
from hrs_tf.evaluation.battery.plan import NORMS, UNBOUNDED_LINF
from hrs_tf.evaluation.battery.summary import masking_flags, summarize
from hrs_tf.evaluation.battery.target import Target
from hrs_tf.evaluation.deciders import REJECTED
from hrs_tf.experiments.cells import CellStore, check_settings
from hrs_tf.experiments.executable import CellExperiment, CellList
from hrs_tf.experiments.execution import Recipe, cell_seed, execute

CLEAN, ATTACK, UNBOUNDED_KIND, TRANSFER = "clean", "attack", "unbounded", "transfer"


@dataclasses.dataclass(frozen=True)
class Defended:
    """One defense of the battery: its display name, spec and model path (see :class:`.target.Target`)."""

    label: str
    spec: str
    path: str


def parse_defenses(items):
    """:class:`Defended` entries from ``[LABEL=]SPEC=PATH`` texts (the label, without '=', defaults to the spec's
    display name); ConfigError on a malformed item, an unknown spec, a missing path or a repeated label."""
    from hrs_tf.defenses import registry

    out, labels = [], set()
    for item in items:
        parts = item.rsplit("=", 1)
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise ConfigError(f"--defense={item!r} must be [LABEL=]SPEC=PATH")
        head, path = parts
        label, sep, spec = head.partition("=")
        if not sep or ":" in label or "," in label:  # no label: the whole head is the spec (which may hold '=')
            label, spec = None, head
        try:
            spec = registry.parse(spec)
        except ConfigError as e:
            raise ConfigError(f"--defense={item!r}: {e} (the grammar is [LABEL=]SPEC=PATH; a LABEL has no '=')") from None
        if not os.path.exists(path):
            raise ConfigError(f"--defense={item!r}: {path!r} does not exist")
        label = label or spec.label
        if label in labels:
            raise ConfigError(f"--defense: the name {label!r} is given twice; name them LABEL=SPEC=PATH")
        labels.add(label)
        out.append(Defended(label, spec.text, os.path.abspath(path)))
    if not out:
        raise ConfigError("give at least one --defense=[LABEL=]SPEC=PATH")
    return out


class Battery(CellExperiment):
    """The battery of ``plan`` against ``defenses`` on ``dataset``'s first ``plan.images`` test images."""

    def __init__(self, dataset, plan, defenses, work_dir, transfer_from=None, attacks=None, log=print):
        self.dataset, self.plan, self.defenses, self.work_dir, self.log = dataset, plan, list(defenses), work_dir, log
        self.transfer_from = None if transfer_from is None else os.path.abspath(transfer_from)
        names = list(battery_attacks.ENTRIES) if attacks is None else list(attacks)
        unknown = [n for n in names if n not in battery_attacks.ENTRIES]
        if unknown:
            raise ConfigError(f"unknown battery attacks {', '.join(unknown)}; choose from "
                              f"{', '.join(battery_attacks.ENTRIES)}")
        if self.transfer_from is None and "transfer" in names:
            names.remove("transfer")
        self.attacks = tuple(names)
        if plan.images > len(dataset.x_test):
            raise ConfigError(f"images={plan.images} exceeds the {len(dataset.x_test)} test images of {dataset.name}")
        self.x = np.asarray(dataset.x_test[:plan.images], np.float32)
        self.y = np.asarray(dataset.y_test[:plan.images], np.int64)
        self._targets = {}
        self.cells = CellStore(work_dir, log, seed=plan.seed, reseed=[self._reseed])
        # a threat may be added; a radius is stored only when set (a run made before radii could be set resumes)
        settings = {k: v for k, v in dataclasses.asdict(plan).items() if k not in ("threats", "linf", "l2")}
        settings.update(plan.radius_overrides())
        check_settings(work_dir, {"battery": {**settings, "transfer_from": self.transfer_from},
                                  "defenses": {d.label: {"spec": d.spec, "path": d.path} for d in self.defenses}},
                       ["battery"], "a battery run with other settings", merged=["defenses"])

    # -- executor protocol ---------------------------------------------------------------------------
    def recipe(self):
        return Recipe(Battery, dataset=self.dataset, plan=self.plan, defenses=self.defenses,
                      work_dir=os.path.abspath(self.work_dir), transfer_from=self.transfer_from, attacks=self.attacks)

    def cell_plan(self):
        todo = CellList(None)
        if "transfer" in self.attacks:
            for threat in self.plan.threats:
                todo.result(TRANSFER, threat, "transfer_examples", threat)
        for d in self.defenses:
            target = self.target(d.label)
            todo.result(CLEAN, d.label, "clean", d.label, group=d.label)
            if "linf" in self.plan.threats:
                todo.result(UNBOUNDED_KIND, d.label, "unbounded", d.label, group=d.label)
            for threat in self.plan.threats:
                for e in battery_attacks.applicable(target, self.attacks):
                    after = (f"{TRANSFER}/{threat}",) if e.name == "transfer" else ()
                    todo.result(ATTACK, attack_name(d.label, threat, e.name), "attack", d.label, threat, e.name,
                                after=after, group=d.label)
        return todo.cells

    def run(self, executor=None):
        return execute(self, executor, self.log)

    # -- targets ---------------------------------------------------------------------------------------
    def target(self, label):
        if label not in self._targets:
            d = next((d for d in self.defenses if d.label == label), None)
            if d is None:
                raise ConfigError(f"no defense named {label!r} in this battery")
            self._targets[label] = Target(label, d.spec, d.path, self.dataset, self.plan.rule, self.plan.passes,
                                          seed=self.plan.seed)
        return self._targets[label]

    def _reseed(self, seed):
        for target in self._targets.values():
            target.reseed(seed)

    def _context(self, label, threat, key, eps=None, transfer=None):
        return battery_attacks.Context(self.target(label), self.x, self.y, threat, NORMS[threat],
                                       self.plan.eps(threat) if eps is None else eps, self.plan,
                                       cell_seed(key, self.plan.seed), transfer)

    # -- cells -------------------------------------------------------------------------------------------
    def clean(self, label):
        def compute():
            target = self.target(label)
            labels = target.labels(self.x)
            out = {**target.describe(), "labels": labels.tolist(), "correct": (labels == self.y).tolist(),
                   "rejected": int((labels == REJECTED).sum())}
            if not target.stochastic:
                a = np.asarray(target.attack_model(self.x[:100], training=False))
                b = np.asarray(target.attack_model(self.x[:100], training=False))
                out["output_spread"] = float(np.abs(a - b).max())
            return out

        return self.cells.cell(CLEAN, label, compute)

    def transfer_examples(self, threat):
        path = os.path.join(self.work_dir, TRANSFER, f"{threat}.npz")

        def compute():
            from hrs_tf.models import serialization

            model = serialization.load_model(self.transfer_from)
            key = f"{TRANSFER}/{threat}"
            adv = battery_attacks.craft_transfer(model, self.x, self.y, NORMS[threat], self.plan.eps(threat),
                                                 self.plan, cell_seed(key, self.plan.seed))
            with fileio.atomic_path(path) as tmp:
                np.savez_compressed(tmp, x_adv=adv)
            fooled = np.argmax(np.asarray(model(adv, training=False)), axis=-1) != self.y
            return {"source": self.transfer_from, "fooled_source": float(fooled.mean())}

        cell = self.cells.cell(TRANSFER, threat, compute)
        if not os.path.exists(path):
            stored = self.cells.path(TRANSFER, threat)
            raise ConfigError(f"{path!r} is missing though its cell is stored; delete {stored!r} to craft the examples "
                              "again")
        return cell

    def attack(self, label, threat, name):
        key = f"{ATTACK}/{attack_name(label, threat, name)}"

        def compute():
            transfer = None
            if name == "transfer":
                self.transfer_examples(threat)
                with np.load(os.path.join(self.work_dir, TRANSFER, f"{threat}.npz")) as stored:
                    transfer = stored["x_adv"]
            out = battery_attacks.ENTRIES[name](self._context(label, threat, key, transfer=transfer))
            return {**out, "robust": out["robust"].tolist(), "threat": threat, "attack": name,
                    "eps": self.plan.eps(threat)}

        return self.cells.cell(ATTACK, attack_name(label, threat, name), compute)

    def unbounded(self, label):
        key = f"{UNBOUNDED_KIND}/{label}"

        def compute():
            clean = self.clean(label)
            # the clean cell's decisions (cells stored before it kept them: decided again)
            labels = np.asarray(clean["labels"]) if "labels" in clean else self.target(label).labels(self.x)
            reachable = np.array([np.any((labels != yi) & (labels != REJECTED)) for yi in self.y])
            correct = np.asarray(clean["correct"], bool)
            ctx = self._context(label, "linf", key, eps=UNBOUNDED_LINF)
            index = np.flatnonzero(correct & reachable)
            robust = np.ones(len(self.x), bool)
            if len(index):
                sub = dataclasses.replace(ctx, x=self.x[index], y=self.y[index], _losses={})
                robust[index] = battery_attacks.unbounded_success(sub)["robust"]
            return {"reachable": reachable.tolist(), "robust": robust.tolist(), "eps": UNBOUNDED_LINF}

        return self.cells.cell(UNBOUNDED_KIND, label, compute)

    # -- results -----------------------------------------------------------------------------------------
    def results(self):
        """{label: {"clean", threat: {"summary", "flags", "attacks"}}} from the cells stored so far; a summary's
        ``missing`` lists the applicable attacks whose cells are not computed yet (its worst case is then partial)."""
        out = {}
        for d in self.defenses:
            clean = self.cells.stored(CLEAN, d.label)
            if clean is None:
                continue
            unbounded = self.cells.stored(UNBOUNDED_KIND, d.label)
            entry = {"clean": clean}
            for threat in self.plan.threats:
                found = {}
                for name in self.attacks:
                    cell = self.cells.stored(ATTACK, attack_name(d.label, threat, name))
                    if cell is not None:
                        found[name] = cell
                if found:
                    facts = types.SimpleNamespace(stochastic=clean["stochastic"], bpda_layers=clean["bpda_layers"],
                                                  num_classes=clean.get("num_classes", self.dataset.num_classes))
                    expected = [e.name for e in battery_attacks.applicable(facts, self.attacks)]
                    summary = dict(summarize(clean["correct"], found), missing=[n for n in expected if n not in found])
                    entry[threat] = {"summary": summary, "attacks": found,
                                     "flags": masking_flags(clean, unbounded, found, self.plan,
                                                           first_threat=threat == self.plan.threats[0])}
            out[d.label] = entry
        return out


def attack_name(label, threat, attack):
    return f"{label}|{threat}|{attack}"
