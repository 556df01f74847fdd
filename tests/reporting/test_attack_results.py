"""The markdown table of tools/attack.py results: scored numbers from a real protocol run, and bad files."""

import json

import keras
import numpy as np
import pytest

from hrs_tf import data as data_module
from hrs_tf.errors import ConfigError
from hrs_tf.evaluation import protocol
from hrs_tf.reporting import attack_results


def test_table_rows_come_from_the_scores_of_a_protocol_run(tmp_path):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((8, 4, 4, 1)).astype(np.float32)
    dataset = data_module.Dataset("toy", x, np.zeros(8, np.int64), x, rng.integers(0, 10, 8), "synthetic")
    inputs = keras.Input((4, 4, 1))
    model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(inputs)))
    record = protocol.evaluate_protocol(model, dataset, "square", num_images=4, targets="none", passes=1,
                                        progress=False, eps=0.5, max_queries=30, seed=0)
    path = tmp_path / "square.json"
    path.write_text(json.dumps(record))
    table = attack_results.table([str(path)])
    cells = [c.strip() for c in table.splitlines()[2].strip("|").split("|")]
    scores = record["results"]
    assert cells[:5] == ["square", "`square`", "eps=0.5, max_queries=30", "none", "4"]
    assert cells[5] == f"{100 * scores['asr']:.1f}%"
    queries = scores["queries"]
    assert queries["max"] <= 30 and cells[11] == f"{queries['mean']:.0f} / {queries['median']:.0f} / {queries['max']}"
    l1 = scores["distortion_of_successful"]["l1"]["mean"]
    assert cells[7] == ("-" if l1 is None else f"{l1:.2f}")


def test_a_file_that_is_not_an_attack_result_is_named(tmp_path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"accuracy": 0.9}))
    with pytest.raises(ConfigError, match="other.json is not a result of tools/attack.py"):
        attack_results.table([str(path)])
    with pytest.raises(ConfigError, match="does not exist"):
        attack_results.table([str(tmp_path / "missing.json")])
