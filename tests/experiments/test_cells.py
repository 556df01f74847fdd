"""The generic experiment machinery: result cells, settings refusal, resumable rows, the model store."""

import json

import pytest

from hrs_tf.errors import ConfigError
from hrs_tf.experiments.cells import CellStore, check_settings, slug
from hrs_tf.experiments.model_store import ModelStore
from hrs_tf.experiments.rows import ResumableRows


def test_cells_are_computed_once_written_atomically_and_read_back(tmp_path):
    logs, calls = [], []
    store = CellStore(str(tmp_path), log=logs.append)

    def compute():
        calls.append(1)
        return {"value": 3}

    cell = store.cell("accuracy", "HRS 2x2 of 5x5", compute)
    path = tmp_path / "cells" / "accuracy" / "HRS_2x2_of_5x5.json"
    assert json.loads(path.read_text()) == cell and cell["cell"] == "HRS 2x2 of 5x5" and cell["value"] == 3
    again = CellStore(str(tmp_path), log=logs.append)
    assert again.cell("accuracy", "HRS 2x2 of 5x5", compute) == cell and len(calls) == 1
    assert again.stored("accuracy", "missing") is None and logs == ["[accuracy] HRS 2x2 of 5x5"]
    count, minutes = again.read_minutes()
    assert count == 1 and minutes == pytest.approx(cell["seconds"] / 60)
    assert slug("hrs_pgd|eot|eps=0.25|HRS 2x2") == "hrs_pgd_eot_eps=0.25_HRS_2x2"


def test_changed_settings_are_refused_on_the_keys_that_change_a_cell(tmp_path):
    check_settings(str(tmp_path), {"num_images": 10, "epochs": (("hrs", 5),), "notes": "a"}, ("num_images", "epochs"), "a run")
    check_settings(str(tmp_path), {"num_images": 10, "epochs": [["hrs", 5]], "notes": "b"}, ("num_images", "epochs"), "a run")
    with pytest.raises(ConfigError, match=r"holds a run with other settings \(num_images: 10 there vs 20 now\)"):
        check_settings(str(tmp_path), {"num_images": 20, "epochs": (("hrs", 5),)}, ("num_images", "epochs"), "a run")
    # Merged keys: entries may be added, never changed; the union is kept.
    check_settings(str(tmp_path / "m"), {"models": {"Base": ["none", 40]}}, (), "a run", merged=("models",))
    check_settings(str(tmp_path / "m"), {"models": {"HRS 5x5": ["hrs:5x5", 40]}}, (), "a run", merged=("models",))
    assert json.loads((tmp_path / "m" / "plan.json").read_text())["models"] == {"Base": ["none", 40],
                                                                                 "HRS 5x5": ["hrs:5x5", 40]}
    with pytest.raises(ConfigError, match=r"Base: \['none', 40\] there vs \['none', 10\] now"):
        check_settings(str(tmp_path / "m"), {"models": {"Base": ["none", 10]}}, (), "a run", merged=("models",))


def test_rows_resume_and_grow_only_where_allowed(tmp_path):
    path = str(tmp_path / "rows.json")
    rows = ResumableRows(path, "search", {"models": ["a"], "attack": "fgsm"}, key=lambda r: r["rate"], growable=("models",))
    rows.add({"rate": "0.1", "asr": 0.5})
    assert json.loads(open(path).read())["finished"] is False
    rows.finish(chosen="0.1")
    resumed = ResumableRows(path, "search", {"models": ["a", "b"], "attack": "fgsm"}, key=lambda r: r["rate"],
                            growable=("models",))
    assert resumed.get("0.1") == {"rate": "0.1", "asr": 0.5} and resumed.get("0.2") is None
    with pytest.raises(ConfigError, match=r"holds results for models \['a'\] that this run does not have"):
        ResumableRows(path, "search", {"models": ["b"], "attack": "fgsm"}, key=lambda r: r["rate"], growable=("models",))
    with pytest.raises(ConfigError, match="attack: 'fgsm' there vs 'pgd' now"):
        ResumableRows(path, "search", {"models": ["a"], "attack": "pgd"}, key=lambda r: r["rate"], growable=("models",))


def test_the_model_store_names_one_model_once(tmp_path, tiny_mnist_dir):
    from hrs_tf import data

    store = ModelStore(data.load_dataset("mnist", tiny_mnist_dir), str(tmp_path))
    store.add("Base", "none", 1)
    assert store.add("Base", "none", 1) == "Base" and store.name_of("none") == "Base" and store.name_of("sap") is None
    with pytest.raises(ConfigError, match=r"model 'Base' is declared twice: none \(1 epochs\) and none \(2 epochs\)"):
        store.add("Base", "none", 2)
    assert store.path("Base") == str(tmp_path / "models" / "base.h5")
    store.add("HRS 2x2", "hrs:2x2", 1)
    assert store.path("HRS 2x2") == str(tmp_path / "models" / "hrs_2x2")  # an HRS run folder
    assert store.is_stochastic("Base") is None and store.training_epochs("Base") == "-"  # not made yet
