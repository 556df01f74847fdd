"""``tools/battery.py`` as a user runs it: a report from a small run, resume, bad input, ``--helpfull``."""

import json
import os

from hrs_tf.models import serialization
from tests.evaluation import battery_toys
from tests.tool_runner import run_script


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
    for args, message in (([f"--defense=none={tmp_path / 'missing.h5'}"], "does not exist"),
                          (["--defense=none"], "SPEC=PATH"),
                          ([], "at least one --defense"),
                          ([f"--defense=none={tmp_path}", "--steps=0"], "steps")):
        out = run_script("battery.py", *args, f"--work_dir={tmp_path / 'work'}", f"--docs_dir={tmp_path / 'docs'}")
        assert out.returncode == 2, out.stderr
        assert out.stderr.strip().count("\n") == 0 and message in out.stderr, out.stderr
    assert not (tmp_path / "work").exists() and not (tmp_path / "docs").exists()


def test_helpfull_lists_the_tools_flags_not_tensorflows():
    out = run_script("battery.py", "--helpfull")
    assert out.returncode == 0
    assert "--images" in out.stdout and "--executor" in out.stdout and "--data_dir" in out.stdout
    assert "op_conversion_fallback_to_while_loop" not in out.stdout and "test_random_seed" not in out.stdout
    assert "flags TensorFlow and absl's test runner define are not listed" in out.stdout
