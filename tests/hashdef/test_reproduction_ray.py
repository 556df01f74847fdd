"""The hash paper's reproduction and compression-rate search on Ray: the same result files as a local run."""

import dataclasses
import json

import keras
import pytest

from hashdef.experiments import cr_search, reproduction  # (registers the hash defenses)
from hrs_tf import models
from hrs_tf.models import serialization
from tests.result_files import in_cells, json_files, without_timing


def result_files(work):
    """{relative path: JSON without timing fields} of every JSON file under ``work``'s cell folders."""
    return json_files(work, keep=in_cells)


@pytest.fixture(scope="module")
def small(real_mnist):
    return dataclasses.replace(real_mnist, x_train=real_mnist.x_train[:128], y_train=real_mnist.y_train[:128],
                               x_test=real_mnist.x_test[:50], y_test=real_mnist.y_test[:50])


@pytest.fixture(scope="module")
def base_file(tmp_path_factory):
    """An untrained (seeded) MNIST base CNN saved as the Original model: the cheapest model with two dense layers."""
    keras.utils.set_random_seed(3)
    path = tmp_path_factory.mktemp("hash_base") / "base.h5"
    serialization.save_model(models.build_base_model("mnist"), path)
    return str(path)


class HashCells(reproduction.Reproduction):
    """The reproduction restricted to the Hash model's training and its Table I cells (a worker builds the plain
    reproduction from the recipe: it only computes the cells it is given)."""

    def cell_plan(self):
        return [c for c in super().cell_plan() if c.key in ("model/Hash", "accuracy/Hash", "estimator/Hash")]


def test_a_hash_reproduction_on_ray_writes_the_local_result_files(ray_executor, small, base_file, tmp_path):
    """The Hash model (trained from the given Original) and its Table I cells: the cells wait for the training, and
    Ray writes the local run's files (the model trained on a worker equals the local one)."""
    plan = reproduction.plan_for("mnist", experiments=("table1",), hash_epochs=1, histogram_images=5)
    keys = {cell.key: cell.after for cell in reproduction.Reproduction(small, plan, str(tmp_path / "plan"),
                                                                       {"Original": base_file}).cell_plan()}
    assert len(keys) == 1 + 16 and keys["model/Hash"] == () and "model/Original" not in keys  # given: not trained
    assert keys["accuracy/Hash + GI2"] == keys["estimator/Hash"] == ("model/Hash",) and keys["accuracy/GI2"] == ()
    HashCells(small, plan, str(tmp_path / "local"), {"Original": base_file}, log=lambda line: None).run()
    logs = []
    HashCells(small, plan, str(tmp_path / "ray"), {"Original": base_file}, log=logs.append).run(executor=ray_executor)
    files = result_files(tmp_path / "local")
    assert len(files) == 2 and result_files(tmp_path / "ray") == files
    done = [line.split(" | ")[1].split(" took")[0] for line in logs if line.startswith("cells:")]
    assert done[0] == "model/Hash" and sorted(done[1:]) == ["accuracy/Hash", "estimator/Hash"]


def test_a_cr_search_on_ray_writes_the_local_output(ray_executor, small, base_file, tmp_path):
    """Two (CR1, CR2) pairs retrained at once on two workers; the output assembled from their cells equals the
    local one (rows, normalised R, the chosen pair)."""
    model = serialization.load_model(base_file)
    kwargs = dict(epochs=1, factor=8, max_cr1=2, max_cr2=1, estimator_images=20, train_images=64, verbose=0,
                  base_model_path=base_file, log=lambda line: None)
    local = cr_search.search(model, small, str(tmp_path / "local" / "cr.json"), **kwargs)
    on_ray = cr_search.search(model, small, str(tmp_path / "ray" / "cr.json"), executor=ray_executor, **kwargs)
    assert without_timing(on_ray) == without_timing(local) and len(local["rows"]) == 2
    assert json.loads((tmp_path / "ray" / "cr.json").read_text())["finished"] is True
    assert result_files(tmp_path / "ray") == result_files(tmp_path / "local")
    assert len(result_files(tmp_path / "ray")) == 2  # one cell per pair
