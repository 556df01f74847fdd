"""Executors: the plan machinery (order, dependencies, rounds, refusals), the local executor, the flags, and (when
Ray is installed) the Ray executor: same result files as a local run, a killed worker's cell rerun, a failing cell
named in one line."""

import json
import os

import pytest

from hrs_tf.errors import ConfigError
from hrs_tf.experiments import execution
from hrs_tf.experiments.execution import Cell, Needs, Recipe, cell_seed, check_plan, execute, ordered
from tests.experiments.toy_cells import DIE_MARK, ToyExperiment
from tests.result_files import in_cells, json_files


def results(work, drop=("pid",)):
    """{relative path: cell JSON without timing fields and ``drop``} of every result cell under ``work``."""
    return json_files(work, keep=in_cells, drop=drop)


def test_cells_come_after_what_they_wait_for_and_plans_are_checked():
    a, b, c = Cell("x", "a", after=("x/b",)), Cell("x", "b"), Cell("x", "c", after=("x/a", "x/done"))
    assert [cell.key for cell in ordered([a, b, c], {"x/done"})] == ["x/b", "x/a", "x/c"]
    with pytest.raises(ConfigError, match="cycle"):
        ordered([Cell("x", "a", after=("x/b",)), Cell("x", "b", after=("x/a",))], set())
    # a plan already in a valid order keeps it: a model's results right after its training, not after every other cell
    plan = [Cell("model", "m"), Cell("r", "m1", after=("model/m",)), Cell("r", "o1"),
            Cell("r", "m2", after=("model/m",)), Cell("r", "o2")]
    assert [cell.key for cell in ordered(plan, set())] == [cell.key for cell in plan]
    # otherwise the earliest cell whose waits are over comes next
    assert [cell.key for cell in ordered(plan[::-1], set())] == ["r/o2", "r/o1", "model/m", "r/m2", "r/m1"]
    with pytest.raises(ConfigError, match="'x/a' twice"):
        check_plan([Cell("x", "a"), Cell("x", "a")])
    with pytest.raises(ConfigError, match="'x/a' waits for 'x/zz', which the plan does not list"):
        check_plan([Cell("x", "a", after=("x/zz",))])
    with pytest.raises(ConfigError, match="cpus=-1 must be >= 0"):
        Needs(cpus=-1)


def test_cell_seeds_are_stable_and_distinct():
    assert cell_seed("draws/d0") == cell_seed("draws/d0") == 1312844114  # the same in every process and run
    assert len({cell_seed(f"draws/d{i}", s) for i in range(50) for s in range(3)}) == 150
    assert all(0 <= cell_seed(f"k{i}") < 2**31 for i in range(100))


def test_recipes_need_module_level_factories_and_rebuild_equal_experiments(tmp_path):
    def local_factory():
        return None
    with pytest.raises(ConfigError, match="module-level callable"):
        Recipe(local_factory)
    toy = ToyExperiment(str(tmp_path), count=3)
    recipe = toy.recipe()
    built = recipe.build()
    assert isinstance(built, ToyExperiment) and built.count == 3 and built.work_dir == str(tmp_path)
    assert recipe.token == toy.recipe().token != ToyExperiment(str(tmp_path), count=2).recipe().token


def test_local_execution_computes_missing_cells_once_with_progress(tmp_path):
    logs = []
    toy = ToyExperiment(str(tmp_path), count=3, log=logs.append)
    summary = execute(toy, log=logs.append)
    assert summary["cells"] == 4
    progress = [line for line in logs if line.startswith("cells:")]
    assert len(progress) == 4 and progress[0].startswith("cells: 1/4 done, 0 running, 3 left")
    assert "about" in progress[0] and "| draws/d0 took" in progress[0] and "about" not in progress[-1]
    first = results(tmp_path)
    values = [first[f"cells/draws/d{i}.json"]["value"] for i in range(3)]
    assert first["cells/sums/total.json"]["total"] == pytest.approx(sum(values))
    assert len(set(values)) == 3  # each cell draws from a seed of its own

    # A cell removed (as if killed before writing) is the only one computed again, and draws the same number.
    os.remove(tmp_path / "cells" / "draws" / "d1.json")
    logs.clear()
    assert execute(ToyExperiment(str(tmp_path), count=3), log=logs.append)["cells"] == 1
    assert results(tmp_path) == first and logs[-1].startswith("cells: 1/1 done")
    assert execute(ToyExperiment(str(tmp_path), count=3), log=logs.append)["cells"] == 0


def test_a_cell_that_is_never_done_is_a_bug_reported_once(tmp_path):
    class Forgetful(ToyExperiment):
        def compute(self, cell):
            pass
    with pytest.raises(ConfigError, match="was computed but is still not done"):
        execute(Forgetful(str(tmp_path), count=1), log=lambda line: None)


def test_executor_flags_are_checked():
    assert isinstance(execution.make_executor("local"), execution.LocalExecutor)
    with pytest.raises(ConfigError, match="--executor='spark' is not one of local, ray"):
        execution.make_executor("spark")
    with pytest.raises(ConfigError, match="--ray_address is a Ray setting; add --executor=ray"):
        execution.make_executor("local", ray_address="auto")
    with pytest.raises(ConfigError, match="--ray_workers=0 must be at least 1"):
        execution.make_executor("ray", ray_workers=0)
    with pytest.raises(ConfigError, match="--ray_threads is a Ray setting"):
        execution.make_executor("local", ray_threads=2)


def test_ray_gives_the_local_results_and_runs_cells_in_parallel(ray_executor, tmp_path):
    execute(ToyExperiment(str(tmp_path / "local"), count=4), log=lambda line: None)
    logs = []
    summary = execute(ToyExperiment(str(tmp_path / "ray"), count=4), ray_executor, log=logs.append)
    assert summary["cells"] == 5
    assert results(tmp_path / "ray") == results(tmp_path / "local")
    pids = {json.loads((tmp_path / "ray" / "cells" / "draws" / f"d{i}.json").read_text())["pid"] for i in range(4)}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2  # in Ray workers (two at most), not in this process
    # The sum waited for the four draws: it is the last progress line.
    assert [line for line in logs if line.startswith("cells:")][-1].split("|")[1].startswith(" sums/total")


def test_a_killed_worker_is_rerun_and_the_plan_completes(ray_executor, tmp_path):
    execute(ToyExperiment(str(tmp_path / "local"), count=3), log=lambda line: None)
    work = tmp_path / "ray"
    execute(ToyExperiment(str(work), count=3, die="d1"), ray_executor, log=lambda line: None)
    assert (work / DIE_MARK).exists()  # the worker did die mid-cell once
    assert results(work) == results(tmp_path / "local")
    assert not [f for f in os.listdir(work / "cells" / "draws") if f.endswith(".tmp.json")]


def test_a_failing_cell_stops_the_run_with_one_line(ray_executor, tmp_path):
    with pytest.raises(execution.ray_cluster.CellError,
                       match=r"^cell 'draws/d2' failed on a Ray worker: ConfigError: cell d2 was told to fail$"):
        execute(ToyExperiment(str(tmp_path), count=3, fail="d2"), ray_executor, log=lambda line: None)
    assert not (tmp_path / "cells" / "draws" / "d2.json").exists()
    # Rerun without the failure: only what is missing is computed.
    assert execute(ToyExperiment(str(tmp_path), count=3), ray_executor, log=lambda line: None)["cells"] >= 2


def test_an_hrs_reproduction_on_ray_writes_the_local_result_files(ray_executor, tiny_mnist_dir, tmp_path):
    """Model training (a cell the attacks wait for), accuracy and attack cells of a stochastic and a deterministic
    defense: byte-identical JSON apart from the compute time, whichever process and order computed them."""
    from hrs_tf import data
    from hrs_tf.experiments import hrs_paper

    dataset = data.load_dataset("mnist", tiny_mnist_dir)
    plan = hrs_paper.plan_for("mnist", defenses=("none", "dropout:0.3"), experiments=("accuracy", "attacks"),
                              epochs=(("none", 1),), num_images=1, eot_samples=2, passes=2, accuracy_repeats=2,
                              eps_grid=(0.25,))
    hrs_paper.Reproduction(dataset, plan, str(tmp_path / "local"), log=lambda line: None).run()
    logs = []
    on_ray = hrs_paper.Reproduction(dataset, plan, str(tmp_path / "ray"), log=logs.append)
    on_ray.run(executor=ray_executor)
    local, ray = results(tmp_path / "local", drop=()), results(tmp_path / "ray", drop=())
    assert len(local) == 2 + 2 + 2 * 4 and ray == local  # Base white-box only; Dropout 0.3 in all four settings
    progress = [line for line in logs if line.startswith("cells:")]
    assert progress[0].split("|")[1].startswith(" model/Base took")  # the attacks waited for the training


def test_a_tool_refuses_bad_executor_flags_before_any_work(tmp_path):
    from tests.tool_runner import run_script

    result = run_script("reproduce_hrs.py", "--dataset=mnist", f"--work_dir={tmp_path / 'work'}", "--ray_threads=2")
    assert result.returncode != 0 and not (tmp_path / "work").exists()
    assert "--ray_threads is a Ray setting; add --executor=ray to use it" in result.stderr


def test_a_groups_ready_cells_share_a_task_and_batches_shrink_as_the_plan_ends():
    from hrs_tf.experiments.execution.ray_cluster import BALANCE, batches

    group = lambda g, n: [Cell("a", f"{g}{i}", group=g) for i in range(n)]  # noqa: E731
    ready = group("x", 8) + group("y", 8) + [Cell("a", "solo")]
    first = batches(ready, free_cpus=2, total_cpus=2)
    assert [c.name for c in first] == [f"x{i}" for i in range(3)]  # ceil(17 / (3 x 2)) = 3 cells of x's group
    assert BALANCE == 3 and [c.name for c in batches(group("x", 4), 2, 2)] == ["x0"]  # the last ones spread out
    assert [c.name for c in batches([Cell("a", "solo")] + group("x", 8), 2, 2)] == ["solo"]  # no group: alone
    assert batches([Cell("a", "big", needs=Needs(cpus=2))], free_cpus=1, total_cpus=2) is None  # waits for 2 CPUs
