"""A new stochastic layer and a new deterministic defense, written only here, added as a plug-in package.

The test writes a package ``tmpplugin`` (a ``UniformNoise`` stochastic layer and its ``uniform`` defense; a
``Quantize`` layer, declared non-differentiable for BPDA, and its deterministic ``bitdepth`` defense) with an
entry point in the ``hrs_tf.plugins`` group, puts it on the path, and shows that with no edit anywhere else it
appears in the registry listing, in ``tools/train_baseline.py``, ``tools/attack.py`` and the HRS-paper
reproduction, and that its models load with ``keras.models.load_model`` in safe mode.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from hrs_tf import plugins
from hrs_tf.models import serialization
from tests.attacks.helpers import trained_model
from tests.tool_runner import REPO, run_script_cases

PLUGIN = '''
"""A plug-in package written by tests/defenses/test_plugins.py."""

import keras
import tensorflow as tf

from hrs_tf import checks
from hrs_tf.defenses import WRAPPED, Argument, Defense, register
from hrs_tf.layers.stochastic import OFF, StochasticLayer
from hrs_tf.models import surgery


@keras.saving.register_keras_serializable(package="tmpplugin")
class UniformNoise(StochasticLayer):
    """Adds noise uniform in [-scale, scale]; random whatever the training flag, pinned / off modes."""

    def __init__(self, scale, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.scale = float(scale)

    def call(self, inputs, training=None):
        noise = tf.random.stateless_uniform(tf.shape(inputs), seed=self.next_seed(), minval=-self.scale,
                                            maxval=self.scale)
        return tf.where(self.mode_is(OFF), inputs, inputs + noise)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="tmpplugin")
class Quantize(keras.layers.Layer):
    """Rounds pixels to 2^bits levels: deterministic, zero gradient almost everywhere (BPDA: identity)."""

    bpda_surrogate = "identity"

    def __init__(self, bits, **kwargs):
        super().__init__(**kwargs)
        self.bits = int(bits)

    def call(self, inputs):
        levels = 2 ** self.bits - 1
        return tf.round(inputs * levels) / levels

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "bits": self.bits}


@register
class UniformNoiseDefense(Defense):
    name = "uniform"
    title = "Uniform"
    summary = "uniform noise after FC1 (test plug-in)"
    reference = "tests/defenses/test_plugins.py"
    make = WRAPPED
    arguments = (Argument("scale", lambda text: checks.positive(text, "scale"), 0.5, "noise half-width"),)

    def label(self, args):
        return f"Uniform {args['scale']:g}"

    def apply(self, args, model, seed=None):
        return surgery.insert(model, UniformNoise(args["scale"], seed=seed, name="uniform"), after="fc1")


@register
class BitDepthDefense(Defense):
    name = "bitdepth"
    title = "Bit depth"
    summary = "input quantisation (test plug-in)"
    reference = "tests/defenses/test_plugins.py"
    make = WRAPPED
    arguments = (Argument("bits", lambda text: checks.count(text, "bits", minimum=1), 4, "bits per pixel"),)

    def label(self, args):
        return f"Bit depth {args['bits']}"

    def apply(self, args, model, seed=None):
        return surgery.insert(model, Quantize(args["bits"], name="quantize"), before="conv1")
'''


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    """A folder holding the package and its distribution metadata with the entry point."""
    root = tmp_path_factory.mktemp("plugin")
    (root / "tmpplugin").mkdir()
    (root / "tmpplugin" / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    info = root / "tmpplugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tmpplugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[hrs_tf.plugins]\ntmpplugin = tmpplugin\n")
    return root


@pytest.fixture(scope="module")
def base_file(tmp_path_factory, real_mnist):
    path = tmp_path_factory.mktemp("plugin_models") / "base.h5"
    serialization.save_model(trained_model(real_mnist), path)
    return path


def plugin_env(plugin_dir):
    """This process's environment with the plug-in on the path (as if pip-installed)."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(plugin_dir), REPO]))


def run(plugin_dir, *args):
    """A project command in a fresh process with the plug-in on the path."""
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=REPO,
                          env=plugin_env(plugin_dir))


def run_cases(plugin_dir, script, cases):
    """Several invocations of ``tools/<script>`` in one fresh process with the plug-in on the path."""
    return run_script_cases(script, cases, env=plugin_env(plugin_dir))


def test_the_plugin_registers_its_defenses_and_layers_in_process(plugin_dir, base_file, monkeypatch):
    import importlib

    from hrs_tf import defenses
    from hrs_tf.defenses import registry
    from hrs_tf.layers import stochastic

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # the other tests see the core registry
    monkeypatch.syspath_prepend(str(plugin_dir))
    importlib.invalidate_caches()
    assert "tmpplugin" in plugins.load()
    assert {"uniform", "bitdepth"} <= set(defenses.names())
    listing = defenses.listing()
    assert "| `uniform[:SCALE]` | wrapped | uniform noise after FC1 (test plug-in) |" in listing
    spec = defenses.parse("uniform:0.2")
    assert spec.text == "uniform:0.2" and spec.label == "Uniform 0.2" and defenses.parse(spec.text) == spec
    base = serialization.load_model(base_file)
    noisy = spec.apply(base, seed=3)
    view = defenses.attacker_view(noisy)  # stochastic because of its layer, whatever the defense is called
    assert view["stochastic"] and view["stochastic_layers"] == ["uniform"] and view["bpda_layers"] == {}
    x = np.random.default_rng(0).random((4, 28, 28, 1)).astype(np.float32)
    with stochastic.randomness(noisy, "off"):
        np.testing.assert_allclose(noisy(x).numpy(), base(x).numpy(), atol=1e-5)
    assert not np.allclose(noisy(x).numpy(), noisy(x).numpy())  # random in inference mode
    quantised = defenses.parse("bitdepth:2").apply(base)
    view = defenses.attacker_view(quantised)
    assert not view["stochastic"] and view["bpda_layers"] == {"quantize": "identity"}


def test_the_plugin_shows_up_in_the_tools_and_its_models_load_in_safe_mode(plugin_dir, base_file, tmp_path,
                                                                          tiny_mnist_dir):
    noisy = tmp_path / "uniform.h5"
    listing, made = run_cases(plugin_dir, "train_baseline.py", [
        ["--list_defenses"], ["--defense=uniform:5", f"--base_model={base_file}", "--dataset=mnist",
                              f"--data_dir={tiny_mnist_dir}", "--eval_repeats=2", f"--output={noisy}"]])
    assert listing.returncode == 0 and "`bitdepth[:BITS]`" in listing.stdout and "`uniform[:SCALE]`" in listing.stdout
    assert made.returncode == 0, made.stderr
    record = json.loads((tmp_path / "uniform.json").read_text())
    assert record["defense"] == "uniform:5.0" and record["attacker_view"]["stochastic_layers"] == ["uniform"]
    # Evaluated with the noise on: noise of +-5 after FC1 costs far more accuracy than chance could (measured
    # 66.5% against the base model's 94.7% on these 300 images).
    test = np.load(tiny_mnist_dir / "mnist.npz")
    plain = float(np.mean(np.argmax(serialization.load_model(base_file)(test["x_test"][..., None] / 255.0), 1)
                          == test["y_test"]))
    assert len(record["clean_accuracy"]["runs"]) == 2 and record["clean_accuracy"]["mean"] < plain - 0.1

    # The saved model loads in safe mode with plain Keras once the plug-in is imported.
    loaded = run(plugin_dir, "-c", f"import keras, tmpplugin; m = keras.models.load_model({str(noisy)!r}, "
                 "compile=False, safe_mode=True); print(type(m.get_layer('uniform')).__name__, m.get_layer('uniform').scale)")
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split()[-2:] == ["UniformNoise", "5.0"]

    # tools/attack.py loads it with no flag (the plug-in is found by its entry point) and attacks it under EOT; the
    # deterministic defense is made from the base model by tools/attack.py itself.
    eot_out, bitdepth_out = tmp_path / "eot.json", tmp_path / "bitdepth.json"
    eot, bitdepth = run_cases(plugin_dir, "attack.py", [
        [f"--model={noisy}", "--dataset=mnist", f"--data_dir={tiny_mnist_dir}", "--attack=pgd", "--eps=0.3",
         "--nb_iter=5", "--setting=eot", "--eot_samples=2", "--num_images=2", "--targets=none", "--passes=3",
         f"--output={eot_out}"],
        [f"--model={base_file}", "--defense=bitdepth:2", "--dataset=mnist", f"--data_dir={tiny_mnist_dir}",
         "--attack=fgsm", "--eps=0.3", "--num_images=2", "--targets=none", "--passes=2", f"--output={bitdepth_out}"]])
    assert eot.returncode == 0, eot.stderr
    result = json.loads(eot_out.read_text())
    assert result["stochastic_layers"] == ["uniform"] and result["eot_samples"] == 2
    assert bitdepth.returncode == 0, bitdepth.stderr
    result = json.loads(bitdepth_out.read_text())
    assert result["attacker_view"]["bpda_layers"] == {"quantize": "identity"} and result["stochastic_layers"] == []
    # FGSM sees the quantiser's zero gradient: the images do not move (the case BPDA exists for).
    assert result["results"]["distortion_of_successful"]["linf"]["mean"] in (None, 0.0)


def test_the_plugin_defenses_show_up_in_the_reproduction(plugin_dir, base_file, tmp_path, tiny_mnist_dir):
    docs = tmp_path / "docs"
    result = run(plugin_dir, "tools/reproduce_hrs.py", "--dataset=mnist", f"--data_dir={tiny_mnist_dir}",
                 "--defenses=none,uniform:5,bitdepth:2", "--experiments=accuracy", f"--use_model=Base={base_file}",
                 f"--work_dir={tmp_path / 'work'}", f"--docs_dir={docs}")
    assert result.returncode == 0, result.stderr
    text = (docs / "reproduce_hrs_mnist.md").read_text()
    cells = {name: json.loads((tmp_path / "work" / "cells" / "accuracy" / f"{name}.json").read_text())
             for name in ("Base", "Uniform_5", "Bit_depth_2")}
    for label, cell in (("Uniform 5", cells["Uniform_5"]), ("Bit depth 2", cells["Bit_depth_2"])):
        acc = cell["accuracy"]
        assert f"| {label} | {100 * acc['mean']:.2f}% +- {100 * acc['std']:.2f} |" in text
    # The noise is on when accuracy is measured (5 passes); the quantiser is deterministic (one pass).
    assert len(cells["Uniform_5"]["accuracy"]["runs"]) == 5 and len(cells["Bit_depth_2"]["accuracy"]["runs"]) == 1
    assert cells["Uniform_5"]["accuracy"]["mean"] < cells["Base"]["accuracy"]["mean"] - 0.1
    records = tmp_path / "work" / "models" / "provenance"
    assert json.loads((records / "Uniform_5.json").read_text()) == {"name": "Uniform 5", "path": None,
                                                                     "spec": "uniform:5.0", "stochastic": True}
    assert json.loads((records / "Bit_depth_2.json").read_text())["stochastic"] is False


def test_a_broken_plugin_is_one_line_naming_it(tmp_path, monkeypatch):
    import importlib

    (tmp_path / "brokenplugin").mkdir()
    (tmp_path / "brokenplugin" / "__init__.py").write_text("raise RuntimeError('cannot start')\n")
    info = tmp_path / "brokenplugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenplugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[hrs_tf.plugins]\nbroken = brokenplugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    from hrs_tf.errors import PluginError

    with pytest.raises(PluginError, match=r"plug-in 'broken' \(module brokenplugin\) failed to load: RuntimeError: "
                                          "cannot start"):
        plugins.load()
    monkeypatch.undo()
    importlib.invalidate_caches()
    plugins.load()  # without it on the path, loading works again


def test_keras_alone_cannot_load_a_plugin_model_before_its_package_is_imported(plugin_dir, base_file, tmp_path):
    # Safe mode refuses unknown classes: the registration by the plug-in is what makes the file loadable.
    path = tmp_path / "q.h5"
    made = run(plugin_dir, "-c", "import tmpplugin; from hrs_tf import defenses; from hrs_tf.models import serialization; "
               f"serialization.save_model(defenses.parse('bitdepth:3').apply(serialization.load_model({str(base_file)!r})), "
               f"{str(path)!r})")
    assert made.returncode == 0, made.stderr
    bare = run(plugin_dir, "-c", f"import keras; keras.models.load_model({str(path)!r}, compile=False, safe_mode=True)")
    assert bare.returncode != 0 and "Quantize" in bare.stderr
    keras.utils.set_random_seed(0)
    ours = run(plugin_dir, "-c", f"from hrs_tf.models import serialization; m = serialization.load_model({str(path)!r}); "
               "print(m.get_layer('quantize').bits)")
    assert ours.returncode == 0 and ours.stdout.split()[-1] == "3"
