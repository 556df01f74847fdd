"""Surrogate fleets (Random Spiking paper section 5.4): seeded random halves, one store per member, the manifest,
resuming and extending, refused settings, wrapped specs, and the tool's flag check.

The defenses trained here are registered by the test only (a copy of the registry, restored afterwards): a
"trained" one that fits class centroids of 7x7-pooled images (no gradient steps, 500 weights) and records every call,
and a "wrapped" one made from it.
"""

import dataclasses
import hashlib
import json
import os

import keras
import numpy as np
import pytest

from hrs_tf.defenses import registry
from hrs_tf.errors import ConfigError
from hrs_tf.experiments import fleet
from tests.tool_runner import run_script, run_script_cases

CALLS = []  # one dict per trainer call
APPLIED = []  # models made by the wrapped defense
KILL_SEEDS = set()  # training seeds at which the trainer dies (a killed run)


class CentroidDefense(registry.Defense):
    name = "fleet_test_centroid"
    summary = "class centroids of 7x7-pooled images (tests/experiments/test_fleet.py)"
    make = registry.TRAINED
    default_epochs = 1

    def fit(self, args, dataset, *, epochs, seed=0, verbose=2, log=print, source_model=None, **settings):
        CALLS.append({"seed": seed, "epochs": epochs, "images": len(dataset.x_train), "settings": settings,
                      "x_sha": hashlib.sha256(dataset.x_train.tobytes()).hexdigest(),
                      "test_images": len(dataset.x_test)})
        if seed in KILL_SEEDS:
            raise KeyboardInterrupt("killed")
        model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.AveragePooling2D(7), keras.layers.Flatten(),
                                  keras.layers.Dense(10, name="fc1")])
        pooled = dataset.x_train.reshape(-1, 4, 7, 4, 7).mean(axis=(2, 4)).reshape(len(dataset.x_train), 16)
        centroids = np.stack([pooled[dataset.y_train == c].mean(axis=0) for c in range(10)])
        model.get_layer("fc1").set_weights([2 * centroids.T, -np.sum(centroids ** 2, axis=1)])
        return model, {"epochs": epochs, "train_images": len(dataset.x_train)}


class MarkedDefense(registry.Defense):
    name = "fleet_test_marked"
    summary = "the centroid model as it is, each made model recorded (tests/experiments/test_fleet.py)"
    make = registry.WRAPPED

    def source(self, args):
        return registry.parse(CentroidDefense.name)

    def apply(self, args, model, seed=None):
        APPLIED.append(model)
        return model


@pytest.fixture
def defenses(monkeypatch):
    registry.names()  # core and plug-in defenses registered before the copy
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    registry.register(CentroidDefense)
    registry.register(MarkedDefense)
    CALLS.clear(), APPLIED.clear(), KILL_SEEDS.clear()
    yield
    CALLS.clear(), APPLIED.clear(), KILL_SEEDS.clear()


@pytest.fixture
def small_mnist(real_mnist):
    """The first 300 training and 100 test images of real MNIST."""
    return dataclasses.replace(real_mnist, x_train=real_mnist.x_train[:300], y_train=real_mnist.y_train[:300],
                               x_test=real_mnist.x_test[:100], y_test=real_mnist.y_test[:100])


def test_members_train_on_seeded_random_halves_with_distinct_seeds():
    halves = [fleet.training_indices(300, 0.5, 0, k) for k in range(16)]
    for indices in halves:
        assert indices.dtype == np.int64 and len(indices) == 150 and len(np.unique(indices)) == 150
        assert np.all(np.diff(indices) > 0) and indices[0] >= 0 and indices[-1] < 300
        # a uniform half: its mean index is 149.5 +- 7.1 (sd of a 150-of-300 sample mean); 5 sd allowed
        assert abs(indices.mean() - 149.5) < 36
    np.testing.assert_array_equal(fleet.training_indices(300, 0.5, 0, 3), halves[3])  # same (seed, k): same half
    assert not np.array_equal(fleet.training_indices(300, 0.5, 1, 3), halves[3])
    # two independent halves share 75 +- 4.3 images (hypergeometric); 6 sd allowed
    overlaps = [len(np.intersect1d(halves[a], halves[b])) for a in range(16) for b in range(a + 1, 16)]
    assert all(49 <= o <= 101 for o in overlaps)
    assert len(fleet.training_indices(301, 0.25, 0, 0)) == 75  # round(75.25)
    np.testing.assert_array_equal(fleet.training_indices(300, 1, 0, 5), np.arange(300))
    seeds = {fleet.member_seed(seed, k) for seed in range(4) for k in range(16)}
    assert len(seeds) == 64 and all(0 <= s < 2 ** 31 for s in seeds)
    assert fleet.member_seed(2, 7) == fleet.member_seed(2, 7)
    for bad in (0, 1.5, -0.5):
        with pytest.raises(ConfigError, match=r"train_fraction=.* must be in \(0, 1\]"):
            fleet.training_indices(300, bad, 0, 0)


def test_a_fleet_trains_each_member_on_its_half_records_it_and_resumes(defenses, small_mnist, tmp_path):
    work = str(tmp_path / "fleet")
    logs = []
    make = lambda models=3, **changes: fleet.Fleet(small_mnist, CentroidDefense.name, work, models=models,  # noqa: E731
                                                   log=logs.append, **changes)
    surrogates = make()
    assert surrogates.train() == [0, 1, 2]
    halves = [fleet.training_indices(300, 0.5, 0, k) for k in range(3)]
    assert [c["seed"] for c in CALLS] == [fleet.member_seed(0, k) for k in range(3)]
    for call, indices in zip(CALLS, halves):  # the trainer saw exactly the member's images, test split untouched
        assert call["images"] == 150 and call["test_images"] == 100 and call["epochs"] == 1
        assert call["x_sha"] == hashlib.sha256(small_mnist.x_train[indices].tobytes()).hexdigest()
    manifest = json.loads((tmp_path / "fleet" / "fleet.json").read_text())
    assert manifest == surrogates.manifest()
    assert (manifest["spec"], manifest["models"], manifest["train_fraction"], manifest["train_pool"]) == \
        (CentroidDefense.name, 3, 0.5, 300)
    assert [m["model"] for m in manifest["members"]] == [0, 1, 2]
    for k, entry in enumerate(manifest["members"]):
        assert entry["indices_sha256"] == hashlib.sha256(halves[k].astype(np.int64).tobytes()).hexdigest()
        assert entry["seed"] == fleet.member_seed(0, k) and entry["train_images"] == 150
        assert entry["file"] == os.path.join(f"model_{k}", "models", "fleet_test_centroid.h5")
        assert entry["seconds"] > 0 and entry["trained_epochs"] == 1
        assert surrogates.file(k) == os.path.join(work, entry["file"]) and os.path.isfile(surrogates.file(k))
    assert surrogates.throughput() == pytest.approx(3 * 150 / sum(e["seconds"] for e in manifest["members"]))
    # the models differ by their data: member 0 and 1 give other logits on the same test images
    logits = [np.asarray(surrogates.model(k)(small_mnist.x_test[:20])) for k in (0, 1)]
    assert np.abs(logits[0] - logits[1]).max() > 1e-3
    assert sum(line.startswith("cells: ") and "| fleet/" in line for line in logs) == 3  # the executor's progress

    # a rerun trains nothing and leaves the manifest as it was (the members' timings kept)
    CALLS.clear()
    assert make().train() == [0, 1, 2] and CALLS == []
    assert json.loads((tmp_path / "fleet" / "fleet.json").read_text()) == manifest
    # a deleted member file: only that member is trained again, its timing replaced
    os.remove(surrogates.file(1))
    again = make()
    assert again.finished() == [0, 2] and again.train() == [0, 1, 2]
    assert [c["seed"] for c in CALLS] == [fleet.member_seed(0, 1)]
    # more models extend the fleet; a run killed in member 3 keeps members 0..2; the rerun makes 3 and 4 only
    CALLS.clear()
    KILL_SEEDS.add(fleet.member_seed(0, 3))
    with pytest.raises(KeyboardInterrupt):
        make(models=5).train()
    assert [m["model"] for m in json.loads((tmp_path / "fleet" / "fleet.json").read_text())["members"]] == [0, 1, 2]
    KILL_SEEDS.clear()
    CALLS.clear()
    extended = make(models=5)
    assert extended.train() == [0, 1, 2, 3, 4]
    assert [c["seed"] for c in CALLS] == [fleet.member_seed(0, k) for k in (3, 4)]
    assert extended.manifest()["models"] == 5 and len(extended.manifest()["members"]) == 5

    # other settings in the same folder: refused in one line naming what differs
    for changes, key in (({"train_fraction": 0.4}, "train_fraction"), ({"seed": 1}, "seed"), ({"epochs": 2}, "epochs"),
                         ({"settings": {"arch": "mnist"}}, "settings")):
        with pytest.raises(ConfigError, match=rf"holds a fleet with other settings \({key}: ") as error:
            make(**changes)
        assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match=r"model 5 is outside this fleet's models 0\.\.4"):
        extended.train([5])
    # fewer models: the first ones, nothing trained, the others' records and files kept for a later extension
    CALLS.clear()
    fewer = make(models=2)
    assert fewer.train() == [0, 1] and CALLS == []
    assert [m["model"] for m in fewer.manifest()["members"]] == [0, 1] and fewer.throughput() == pytest.approx(
        2 * 150 / sum(e["seconds"] for e in fewer.manifest()["members"]))
    assert [m["model"] for m in json.loads((tmp_path / "fleet" / "fleet.json").read_text())["members"]] == [0, 1]
    assert make(models=5).finished() == [0, 1, 2, 3, 4] and CALLS == []


def test_a_wrapped_spec_has_its_source_trained_in_each_member_store(defenses, small_mnist, tmp_path):
    work = str(tmp_path / "wrapped")
    surrogates = fleet.Fleet(small_mnist, MarkedDefense.name, work, models=2, source_epochs=3,
                             settings={"train_images": 200}, log=lambda line: None)
    assert surrogates.epochs is None and surrogates.source_epochs == 3
    defaults = [fleet.Fleet(small_mnist, MarkedDefense.name, str(tmp_path / f"other_{i}"), epochs=epochs)
                for i, epochs in enumerate((None, 2))]  # source epochs: the given epochs, else the source's default
    assert [(f.epochs, f.source_epochs) for f in defaults] == [(None, 1), (None, 2)]
    surrogates.train()
    # each member trained its own source on its half of the first 200 images (train_images: the pool, not passed on)
    assert [(c["seed"], c["images"], c["epochs"], c["settings"]) for c in CALLS] == \
        [(fleet.member_seed(0, k), 100, 3, {}) for k in range(2)]
    first = fleet.training_indices(200, 0.5, 0, 0)
    assert CALLS[0]["x_sha"] == hashlib.sha256(small_mnist.x_train[first].tobytes()).hexdigest()
    manifest = surrogates.manifest()
    assert manifest["train_pool"] == 200 and manifest["settings"] == {"train_images": 200}
    for k, entry in enumerate(manifest["members"]):
        assert entry["file"] is None and surrogates.file(k) is None
        assert entry["source_file"] == os.path.join(f"model_{k}", "models", "fleet_test_centroid.h5")
        assert entry["trained_epochs"] == 3
    model = surrogates.model(1)
    assert model is APPLIED[-1] and surrogates.store(1).file(CentroidDefense.name) == \
        os.path.join(work, manifest["members"][1]["source_file"])


def test_members_have_records_of_their_own_and_an_earlier_single_manifest_still_reads(defenses, small_mnist, tmp_path):
    work = tmp_path / "fleet"
    make = lambda: fleet.Fleet(small_mnist, CentroidDefense.name, str(work), models=2,  # noqa: E731
                               log=lambda line: None)
    surrogates = make()
    assert [cell.key for cell in surrogates.member_cells()] == [f"fleet/{CentroidDefense.name} model {k}"
                                                                  for k in range(2)]
    surrogates.train()
    manifest = json.loads((work / "fleet.json").read_text())
    records = [json.loads((work / "members" / f"{k}.json").read_text()) for k in range(2)]
    assert manifest["members"] == records  # the manifest: the members' own records, assembled
    # a folder of an earlier run: every member in fleet.json, no record files; nothing is trained again
    for k in range(2):
        os.remove(work / "members" / f"{k}.json")
    CALLS.clear()
    earlier = make()
    assert earlier.finished() == [0, 1] and earlier.train() == [0, 1] and CALLS == []
    assert earlier.manifest() == manifest and earlier.file(1) == surrogates.file(1)


def test_the_tool_refuses_a_bad_fraction_before_writing_anything(tmp_path):
    work = tmp_path / "fleet"
    result = run_script("train_fleet.py", "--scheme=RS-1", "--train_fraction=1.5", f"--work_dir={work}")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()  # TensorFlow's start-up lines come first
    assert lines[-1] == "error: train_fraction=1.5 must be in (0, 1] (the share of the training set each model trains on)"
    assert "Traceback" not in result.stderr and sum(line.startswith("error:") for line in lines) == 1
    assert not work.exists()


def test_a_wrapped_fleet_takes_its_sources_from_a_fleet_of_its_source(defenses, small_mnist, tmp_path):
    quiet = lambda line: None  # noqa: E731
    common = dict(settings={"train_images": 200}, log=quiet)
    source = fleet.Fleet(small_mnist, CentroidDefense.name, str(tmp_path / "centroid"), models=2, epochs=3, **common)
    wrapped = fleet.Fleet(small_mnist, MarkedDefense.name, str(tmp_path / "marked"), models=2, source_epochs=3,
                          source_fleet=source, **common)
    # planned with its source's cells, member k waits for source member k; alone it waits for nothing
    assert [c.after for c in wrapped.member_cells(after_source=True)] == [(source.cell_key(k),) for k in range(2)]
    assert [c.after for c in wrapped.member_cells()] == [(), ()]
    source.train([0])  # member 0's source exists; member 1's is made in the source fleet by the wrapped fleet
    wrapped.train()
    assert [c["seed"] for c in CALLS] == [fleet.member_seed(0, 0), fleet.member_seed(0, 1)]  # each trained once
    assert [e["model"] for e in json.loads((tmp_path / "centroid" / "fleet.json").read_text())["members"]] == [0, 1]
    assert source.finished() == [0, 1] and source.train() == [0, 1] and len(CALLS) == 2
    for k, entry in enumerate(wrapped.manifest()["members"]):
        assert entry["source_file"] == os.path.join("..", "centroid", f"model_{k}", "models", "fleet_test_centroid.h5")
        assert entry["trained_epochs"] == 0 and entry["seconds"] == 0.0
        assert not (tmp_path / "marked" / f"model_{k}" / "models" / "fleet_test_centroid.h5").exists()
    assert wrapped.manifest()["source_fleet"] == os.path.join("..", "centroid")
    model = wrapped.model(1)
    assert model is APPLIED[-1]
    for mine, theirs in zip(model.get_weights(), source.model(1).get_weights()):
        np.testing.assert_array_equal(mine, theirs)
    # the folder alone names the fleet (a worker, or the tool's --source_fleet, opens it so)
    reopened = fleet.Fleet(small_mnist, MarkedDefense.name, str(tmp_path / "marked"), models=2, source_epochs=3,
                           source_fleet=str(tmp_path / "centroid"), **common)
    assert reopened.source_fleet.spec == source.spec and reopened.finished() == [0, 1] and len(CALLS) == 2
    assert fleet.Fleet.at(small_mnist, str(tmp_path / "marked")).source_fleet.work_dir == \
        os.path.join(str(tmp_path / "marked"), "..", "centroid")  # its folder names its source fleet too

    # a fleet whose members are not this fleet's sources is refused, in one line naming what differs
    other = {"seed": dict(seed=1), "train_fraction": dict(train_fraction=0.25), "epochs": dict(source_epochs=2),
             "settings": dict(settings={"train_images": 100}), "models": dict(models=3)}
    for what, changes in other.items():
        kwargs = dict(dict(common, source_epochs=3, models=2), **changes)
        refused = rf"cannot be the source fleet of '{MarkedDefense.name}': it has .*{what}"
        with pytest.raises(ConfigError, match=refused) as e:
            fleet.Fleet(small_mnist, MarkedDefense.name, str(tmp_path / what), source_fleet=source, **kwargs)
        assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="has no source model; a source fleet does not apply"):
        fleet.Fleet(small_mnist, CentroidDefense.name, str(tmp_path / "plain"), source_fleet=source, **common)
    with pytest.raises(ConfigError, match=r"holds no fleet \(no plan.json\)"):
        fleet.Fleet(small_mnist, MarkedDefense.name, str(tmp_path / "x"), source_fleet=str(tmp_path / "none"), **common)


def test_the_tool_refuses_a_source_fleet_that_does_not_fit_before_training(tiny_mnist_dir, tmp_path):
    source = run_script("train_fleet.py", "--scheme=Standard", "--models=1", "--epochs=1", "--train_images=100",
                        f"--data_dir={tiny_mnist_dir}", f"--work_dir={tmp_path / 'standard'}")
    assert source.returncode == 0, source.stderr[-2000:]
    work = tmp_path / "rc"
    not_dropout = "cannot be the source fleet of 'region': it has spec 'rs_standard', not 'rs_dropout'"
    refusals = ((tmp_path / "none", "holds no fleet (no plan.json)"), (tmp_path / "standard", not_dropout))
    results = run_script_cases("train_fleet.py", [["--scheme=RC", "--models=1", "--epochs=1", "--train_images=100",
                                                   f"--data_dir={tiny_mnist_dir}", f"--work_dir={work}",
                                                   f"--source_fleet={folder}"] for folder, _ in refusals])
    for (folder, message), result in zip(refusals, results):
        assert result.returncode != 0
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and message in last and "Traceback" not in result.stderr
    assert not work.exists() and not (tmp_path / "none").exists()
