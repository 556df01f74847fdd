"""tools/attack.py end to end in a subprocess: JSON contents, progress, and clean error exits."""

import json
import os

import pytest

from hrs_tf import models
from hrs_tf.models import serialization
from tests.attacks.helpers import trained_model
from tests.tool_runner import run_script, run_script_cases



def run_tool(*args):
    return run_script("attack.py", *args)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, real_mnist):
    path = tmp_path_factory.mktemp("attack_tool") / "small.h5"
    serialization.save_model(trained_model(real_mnist), path)
    return path


def test_attack_tool_writes_results(tmp_path, saved_model, tiny_mnist_dir):
    out = tmp_path / "out" / "results.json"
    result = run_tool(f"--model={saved_model}", "--dataset=mnist", f"--data_dir={tiny_mnist_dir}", "--attack=cw_pgd",
                      "--eps=64/255", "--setting=eot", "--eot_samples=2", "--num_images=3", "--targets=all",
                      "--passes=2", "--batch_size=10", "--seed=5", f"--output={out}")
    assert result.returncode == 0, result.stderr
    assert "[cw_pgd eot] batch 3/3: 27/27 examples" in result.stdout  # progress per batch
    # said once: EOT on a model without randomness changes nothing
    assert result.stdout.count("has no stochastic layer: setting 'eot' changes nothing") == 1
    record = json.loads(out.read_text())
    assert record["attack"] == "cw_pgd" and record["setting"] == "eot" and record["eot_samples"] == 2
    assert "has no stochastic layer" in record["setting_note"]
    assert record["attack_settings"] == {"eps": pytest.approx(64 / 255)}
    assert record["command_line"]["eps"] == "64/255" and record["seed"] == 5
    assert record["targets"] == "all" and record["results"]["num_examples"] == 27 and record["passes"] == 2
    assert {"tensorflow", "keras", "numpy", "cleverhans"} <= set(record["versions"])
    assert record["versions"]["cleverhans"].startswith("4.0.0")
    results = record["results"]
    # A deterministic model: every pass and every decision rule agree, and the counts match the rate.
    assert results["asr"] == results["asr_first_pass"] == results["asr_majority"] == results["asr_mc_average"]
    assert results["asr_std_over_passes"] == 0 and results["num_successful_majority"] == round(27 * results["asr"])
    assert results["asr"] >= 0.5  # targeted CW-PGD at 64/255 on the 2-epoch model (measured 27/27)
    assert record["clean"]["num_images"] == 3 and record["attacker_view"]["stochastic"] is False
    assert record["results"]["distortion_of_successful"]["linf"]["mean"] is None or \
        record["results"]["distortion_of_successful"]["linf"]["mean"] <= 64 / 255 + 1e-6
    assert os.listdir(tmp_path / "out") == ["results.json"]


def test_attack_tool_makes_the_defense_from_the_model(tmp_path, saved_model, tiny_mnist_dir):
    out = tmp_path / "sap.json"
    result = run_tool(f"--model={saved_model}", "--defense=sap:hrs", "--dataset=mnist", f"--data_dir={tiny_mnist_dir}",
                      "--attack=fgsm", "--eps=0.1", "--num_images=2", "--targets=none", "--passes=4", "--round_8bit",
                      f"--output={out}")
    assert result.returncode == 0, result.stderr
    record = json.loads(out.read_text())
    assert record["defense"] == "sap:hrs" and record["attacker_view"]["stochastic_layers"] == ["sap"]
    assert record["stochastic_layers"] == ["sap"] and record["results"]["rounded_to_8bit"] is True
    assert record["round_8bit"] is True and record["targeted"] is False


def test_attack_tool_records_the_queries_of_a_black_box_attack_and_its_attacker_data(tmp_path, saved_model,
                                                                                     tiny_mnist_dir):
    out = tmp_path / "sub.json"
    result = run_tool(f"--model={saved_model}", "--dataset=mnist", f"--data_dir={tiny_mnist_dir}",
                      "--attack=substitute_fgsm", "--eps=0.3", "--rounds=2", "--num_seed=20", "--substitute_epochs=2",
                      "--num_images=6", "--batch_size=3", "--targets=none", "--passes=1", f"--output={out}")
    assert result.returncode == 0, result.stderr
    record = json.loads(out.read_text())
    # 20 seed images labelled, then the 20 points of one Jacobian augmentation: 40 label queries, shared by all
    # 6 examples (the substitute is trained once: the second batch finds it cached)
    assert record["results"]["queries"] == {"mean": 40.0, "median": 40.0, "max": 40, "total": 240}
    assert record["attacker_data"] == "test images 6..299"  # the seed set is disjoint from the attacked images
    assert record["attack_settings"]["rounds"] == 2


@pytest.fixture(scope="module")
def cifar_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("attack_tool_cifar") / "cifar.h5"
    serialization.save_model(models.build_base_model("cifar10"), path)
    return path


BAD_INPUTS = [
    (["--attack=nosuch"], "unknown attack 'nosuch'"),
    (["--attack=pgd", "--backend=cleverhans", "--setting=eot"], "backend=cleverhans cannot run EOT"),
    (["--attack=square", "--max_queries=0"], "max_queries"),
    (["--attack=pgd", "--eps=8"], "outside [0, 1]"),
    (["--attack=cw_l2", "--eps=0.1"], "does not take the setting 'eps'"),
    (["--attack=pgd", "--model={cifar}"], "takes inputs of shape (32, 32, 3)"),
    (["--attack=pgd", "--defense=gaussian"], "defense 'gaussian' is trained; train it"),
]


def test_attack_tool_errors_are_one_line_and_leave_no_file(tmp_path, saved_model, cifar_model, tiny_mnist_dir):
    cases = []
    for i, (args, _) in enumerate(BAD_INPUTS):
        args = [a.format(cifar=cifar_model) for a in args]
        if not any(a.startswith("--model=") for a in args):
            args.append(f"--model={saved_model}")
        cases.append([f"--data_dir={tiny_mnist_dir}", "--num_images=2", f"--output={tmp_path / str(i) / 'r.json'}", *args])
    for args, (_, message), result in zip(cases, BAD_INPUTS, run_script_cases("attack.py", cases)):
        assert result.returncode != 0, args
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and message in errors[0], (args, result.stderr)
        assert "Traceback" not in result.stderr, args
    assert os.listdir(tmp_path) == []
