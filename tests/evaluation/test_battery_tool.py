"""``tools/battery.py`` as a user runs it: a report from a small run, resume, bad input, ``--helpfull``."""

import json
import os

import numpy as np
import pytest

from hrs_tf.models import serialization
from tests.evaluation import battery_toys
from tests.tool_runner import run_script, run_script_cases


def test_a_small_battery_writes_the_leaderboard_and_resumes(real_mnist, tiny_mnist_dir, tmp_path):
    plain = tmp_path / "plain.h5"
    serialization.save_model(battery_toys.classifier(real_mnist, images=1000, epochs=1), str(plain))
    args = [f"--defense=Plain=none={plain}", f"--defense=bits={plain}", "--dataset=mnist",
            f"--data_dir={tiny_mnist_dir}", "--images=8", "--steps=2",
            "--restarts=1", "--square_queries=10", "--threats=linf", "--attacks=pgd_ce,one_step,bpda,square",
            f"--work_dir={tmp_path / 'work'}", f"--docs_dir={tmp_path / 'docs'}"]
    first = run_script("battery.py", *args)
    assert first.returncode == 0, first.stderr
    assert "[attack] Plain|linf|pgd_ce" in first.stdout
    page = (tmp_path / "docs" / "battery_mnist.md").read_text()
    assert page.startswith("# Adaptive-attack battery: mnist")
    assert f"python tools/battery.py --defense=Plain=none={plain}" in page  # the command at the top
    rows = [line for line in page.splitlines() if line.startswith("| Plain |") or line.startswith("| Bit depth |")]
    assert len(rows) >= 2 and "unbounded" in page
    assert os.path.getsize(tmp_path / "docs" / "battery" / "mnist.png") > 1000
    numbers = json.loads((tmp_path / "docs" / "battery" / "mnist.json").read_text())
    assert numbers["plan"]["images"] == 8 and set(numbers["defenses"]) == {"Plain", "Bit depth"}
    assert numbers["defenses"]["Bit depth"]["target"]["bpda_layers"] and "bpda" in numbers["defenses"]["Bit depth"][
        "linf"]["summary"]["per_attack"]
    again = run_script("battery.py", *args)
    assert again.returncode == 0 and "[attack]" not in again.stdout  # every cell read back, none computed again


def test_bad_input_is_one_line_and_leaves_nothing(tmp_path):
    bad = (([f"--defense=none={tmp_path / 'missing.h5'}"], "does not exist"),
           (["--defense=none"], "SPEC=PATH"),
           ([], "at least one --defense"),
           ([f"--defense=none={tmp_path}", "--steps=0"], "steps"))
    folders = [f"--work_dir={tmp_path / 'work'}", f"--docs_dir={tmp_path / 'docs'}"]
    for (args, message), out in zip(bad, run_script_cases("battery.py", [[*args, *folders] for args, _ in bad])):
        assert out.returncode == 2, out.stderr
        assert out.stderr.strip().count("\n") == 0 and message in out.stderr, out.stderr
    assert not (tmp_path / "work").exists() and not (tmp_path / "docs").exists()


def test_helpfull_lists_the_tools_flags_not_tensorflows():
    out = run_script("battery.py", "--helpfull")
    assert out.returncode == 0
    assert "--images" in out.stdout and "--executor" in out.stdout and "--data_dir" in out.stdout
    assert "op_conversion_fallback_to_while_loop" not in out.stdout and "test_random_seed" not in out.stdout
    assert "flags TensorFlow and absl's test runner define are not listed" in out.stdout


def test_cifar10_runs_at_its_own_radii_from_an_archive_in_the_canonical_format(tmp_path):
    """CIFAR-10 is not available offline: the battery reads a small archive in the canonical format (20 test images)
    and attacks at the data set's radii (L-inf 8/255, L2 0.5); a model that ignores its input keeps exactly its clean
    accuracy, and every attack cell of an untrained one records the data set's radius."""
    import keras

    from tests.data.test_loading import cifar_batches, cifar_members, write_cifar_archive

    batches = cifar_batches(n=20, seed=1)
    write_cifar_archive(tmp_path / "data" / "cifar10" / "cifar-10-python.tar.gz", cifar_members(batches))
    label = int(np.bincount(batches["test_batch"][b"labels"], minlength=10).argmax())
    constant, plain = tmp_path / "constant.h5", tmp_path / "plain.h5"
    keras.utils.set_random_seed(0)
    ignoring = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10)])
    ignoring.set_weights([np.zeros((3072, 10), np.float32), np.eye(10, dtype=np.float32)[label] * 5.0])  # zero kernel
    serialization.save_model(ignoring, str(constant))
    serialization.save_model(keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
                                               keras.layers.Flatten(), keras.layers.Dense(10)]), str(plain))
    out = run_script("battery.py", "--dataset=cifar10", f"--data_dir={tmp_path / 'data'}",
                     f"--defense=Constant=none={constant}", f"--defense=Plain=none={plain}", "--images=20", "--steps=3",
                     "--restarts=1", "--square_queries=20", "--attacks=pgd_ce,apgd_dlr,square",
                     f"--work_dir={tmp_path / 'work'}", f"--docs_dir={tmp_path / 'docs'}")
    assert out.returncode == 0, out.stderr
    numbers = json.loads((tmp_path / "docs" / "battery" / "cifar10.json").read_text())
    assert numbers["plan"]["radii"] == {"linf": pytest.approx(8 / 255), "l2": pytest.approx(0.5)}
    expected = float(np.mean(np.array(batches["test_batch"][b"labels"]) == label))
    radius = {"linf": 8 / 255, "l2": 0.5}
    for threat in ("linf", "l2"):
        constant_summary = numbers["defenses"]["Constant"][threat]["summary"]
        assert constant_summary["clean_accuracy"] == pytest.approx(expected)
        assert constant_summary["robust_accuracy"] == pytest.approx(expected)
        for attack in ("pgd_ce", "apgd_dlr", "square"):  # every attack ran at the data set's radius
            cell = json.loads((tmp_path / "work" / "cells" / "attack" / f"Plain_{threat}_{attack}.json").read_text())
            assert cell["eps"] == pytest.approx(radius[threat])
    assert (tmp_path / "docs" / "battery_cifar10.md").read_text().startswith("# Adaptive-attack battery: cifar10")
