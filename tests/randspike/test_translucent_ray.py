"""Fleets and the translucent-box study on Ray (skipped without Ray): the same member records, cells and examples as
the local executor, fleet members trained at once by different workers.

The test-only defenses (tests/experiments/test_fleet.py, tests/randspike/test_translucent.py and one here) are
registered in each Ray worker by the recipe's factory (:func:`with_test_defenses`): a worker is a process of its own.
"""

import dataclasses
import json
import os
import time

import pytest

from hrs_tf import fileio
from hrs_tf.defenses import registry
from hrs_tf.experiments import fleet
from hrs_tf.experiments.execution import Recipe
from randspike.translucent import study
from tests.experiments import test_fleet
from tests.randspike.test_translucent import DroppedDefense, same_examples, stored

defenses = test_fleet.defenses  # the fixture registering test-only defenses (a copy of the registry)
CentroidDefense = test_fleet.CentroidDefense
TRACE = {"dir": None}  # in a worker: where the traced trainer meets the others (set by with_test_defenses)
TOGETHER_TIMEOUT = 60  # seconds a traced trainer waits for another one to start


class TracedDefense(CentroidDefense):
    name = "fleet_test_traced"
    summary = "the centroid model, its training waiting for another one to start on a worker (tests/randspike)"

    def fit(self, args, dataset, *, seed=0, **kwargs):
        folder = TRACE["dir"]
        if folder:  # proves parallel training: this one starts, then waits until another one has started
            started = os.path.join(folder, "started")
            os.makedirs(started, exist_ok=True)
            open(os.path.join(started, str(seed)), "w").close()
            deadline = time.time() + TOGETHER_TIMEOUT
            while len(os.listdir(started)) < 2 and time.time() < deadline:
                time.sleep(0.05)
            fileio.write_json(os.path.join(folder, f"{seed}.json"),
                              {"pid": os.getpid(), "together": len(os.listdir(started)) >= 2})
        return super().fit(args, dataset, seed=seed, **kwargs)


TEST_DEFENSES = (CentroidDefense, DroppedDefense, TracedDefense)


def with_test_defenses(experiment_class, trace_dir=None, **kwargs):
    """A recipe's factory: registers the test defenses in this (worker) process, then ``experiment_class(**kwargs)``."""
    registry.names()
    for defense in TEST_DEFENSES:
        registry.register(defense)
    TRACE["dir"] = trace_dir
    return experiment_class(**kwargs)


def on_workers(experiment, trace_dir=None):
    """``experiment`` whose Ray workers register the test defenses before building it."""
    recipe = type(experiment).recipe(experiment)
    experiment.recipe = lambda: Recipe(with_test_defenses, experiment_class=type(experiment), trace_dir=trace_dir,
                                       **recipe.kwargs)
    return experiment


@pytest.fixture
def small_mnist(real_mnist, defenses):
    registry.register(DroppedDefense)
    registry.register(TracedDefense)
    return dataclasses.replace(real_mnist, x_train=real_mnist.x_train[:300], y_train=real_mnist.y_train[:300],
                               x_test=real_mnist.x_test[:20], y_test=real_mnist.y_test[:20])


def test_fleet_members_train_at_once_on_ray_into_the_local_records(ray_executor, small_mnist, tmp_path):
    make = lambda where: fleet.Fleet(small_mnist, TracedDefense.name, str(tmp_path / where), models=3,  # noqa: E731
                                     log=lambda line: None)
    assert make("local").train() == [0, 1, 2]
    logs = []
    on_ray = on_workers(make("ray"), trace_dir=str(tmp_path / "trace"))
    on_ray.log = logs.append
    assert on_ray.train(executor=ray_executor) == [0, 1, 2]
    # one record per member, written by its cell; the manifest assembled by the driver: as the local run's
    assert sorted(os.listdir(tmp_path / "ray" / "members")) == ["0.json", "1.json", "2.json"]
    assert stored(tmp_path / "ray", "members") == stored(tmp_path / "local", "members")
    manifests = [json.loads((tmp_path / where / "fleet.json").read_text()) for where in ("local", "ray")]
    for manifest in manifests:
        for member in manifest["members"]:
            assert member.pop("seconds") > 0
    assert manifests[0] == manifests[1] and len(manifests[1]["members"]) == 3
    # trained in two worker processes, each training waiting until another one had started (in parallel)
    traces = [json.loads((tmp_path / "trace" / f"{fleet.member_seed(0, k)}.json").read_text()) for k in range(3)]
    assert all(t["together"] for t in traces)
    pids = {t["pid"] for t in traces}
    assert len(pids) >= 2 and os.getpid() not in pids
    progress = [line for line in logs if line.startswith("cells: ")]
    assert len(progress) == 3 and all("| fleet/fleet_test_traced model " in line for line in progress)
    assert {line.rsplit(":", 1)[1] for line in progress} == {str(p) for p in pids}  # "... on host:pid"


def test_a_study_on_ray_writes_the_local_cells_and_examples(ray_executor, small_mnist, tmp_path):
    """Two schemes (one stochastic: its C&W uses EOT and its judgement MC passes), fleets of 3: the fleet members'
    training, generate and judge cells on two workers give the local files."""
    plan = study.plan_for("mnist", schemes=(CentroidDefense.name, DroppedDefense.name), models=3, sources=1,
                          single_sources=1, threshold=1, epochs=1, images=4, attack_batch=4, confidences=(0,),
                          cw_iterations=20, cw_search_steps=2, cw_learning_rate=0.2, cw_initial_const=100.0, eot=2,
                          passes=3, edges=(0.0, 2.0, 6.0))
    make = lambda where: study.TranslucentStudy(small_mnist, plan, str(tmp_path / where),  # noqa: E731
                                                log=lambda line: None)
    local = make("local").run()
    logs = []
    on_ray = on_workers(make("ray"))
    on_ray.log = logs.append
    assert on_ray.run(executor=ray_executor) == local
    cells = stored(tmp_path / "ray", "cells")
    assert cells == stored(tmp_path / "local", "cells")
    # 2 schemes x (multi, single0) generate cells; judge: multi on both schemes, single0 on its own
    assert [sum(p.startswith(f"cells/{kind}/") for p in cells) for kind in ("generate", "judge")] == [4, 6]
    assert any(c["examples"] for p, c in cells.items() if p.startswith("cells/judge/"))  # examples were judged
    assert same_examples(tmp_path / "local", tmp_path / "ray") == (True, 4)
    for scheme in (CentroidDefense.name, DroppedDefense.name):
        folder = f"fleets/{scheme}/members"
        assert len(stored(tmp_path / "ray", folder)) == 3 and stored(tmp_path / "ray", folder) == stored(
            tmp_path / "local", folder)
    # every cell finished after what it waits for: a generate cell after its source model's training, a judge cell
    # after its generate cell and its target models' training
    order = [line.split("| ")[1].split(" took")[0] for line in logs if line.startswith("cells: ")]
    assert len(order) == 6 + 4 + 6 and len(set(order)) == len(order)
    for cell in on_ray.cell_plan():
        assert all(order.index(key) < order.index(cell.key) for key in cell.after)
    generate = next(c for c in on_ray.cell_plan() if c.kind == "generate")
    assert generate.after == (f"fleet/{CentroidDefense.name} model 0",)
