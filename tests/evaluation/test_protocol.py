"""The evaluation harness: scores, the stochastic single-pass / majority ASR, the papers' protocol."""

import json

import keras
import numpy as np
import pytest

from hrs_tf import attacks, evaluation, models
from hrs_tf.defenses import hrs
from hrs_tf.layers import stochastic
from hrs_tf.errors import ConfigError, ModelError
from tests.attacks.helpers import trained_model


def test_vote_success_and_distortions_by_hand():
    preds = np.array([[1, 2, 3, 0], [2, 2, 3, 1], [1, 0, 4, 2]])
    np.testing.assert_array_equal(evaluation.vote(preds, 5), [1, 2, 3, 0])  # last column: a 3-way tie -> 0
    np.testing.assert_array_equal(evaluation.success(preds[0], [1, 1, 1, 1], True), [True, False, False, False])
    np.testing.assert_array_equal(evaluation.success(preds[0], [1, 1, 1, 1], False), [False, True, True, True])
    x = np.zeros((2, 2, 2, 1), np.float32)
    adv = x.copy()
    adv[0, 0, 0, 0], adv[0, 1, 1, 0] = 0.3, 0.4
    adv[1, 0, 1, 0] = -0.5
    d = evaluation.distortions(x, adv)
    np.testing.assert_allclose(d["l0"], [2, 1])
    np.testing.assert_allclose(d["l0_fraction"], [0.5, 0.25])
    np.testing.assert_allclose(d["l2"], [0.5, 0.5], rtol=1e-6)
    np.testing.assert_allclose(d["linf"], [0.4, 0.5], rtol=1e-6)


def test_make_pairs():
    idx, tgt = evaluation.make_pairs(np.array([3, 0]), "all")
    assert list(idx) == [0] * 9 + [1] * 9
    assert list(tgt) == [0, 1, 2, 4, 5, 6, 7, 8, 9] + list(range(1, 10))
    idx, tgt = evaluation.make_pairs(np.arange(10).repeat(20), "random", seed=1)
    assert np.all(tgt != np.arange(10).repeat(20)) and len(set(tgt)) == 10
    np.testing.assert_array_equal(tgt, evaluation.make_pairs(np.arange(10).repeat(20), "random", seed=1)[1])
    idx, tgt = evaluation.make_pairs(np.array([4, 5]), "none")
    assert list(tgt) == [4, 5]
    with pytest.raises(ConfigError, match="targets='some'"):
        evaluation.make_pairs(np.array([1]), "some")


@pytest.fixture(scope="module")
def two_faced():
    """A 1-block HRS model whose channel c always predicts class c (c = 0, 1), per-example switching."""
    keras.utils.set_random_seed(2)
    model = hrs.build_hrs_model("mnist", (2,), granularity="sample", seed=11)
    for c, channel in enumerate(hrs.switches(model)[0].channels):
        logits = channel.get_layer("logits")
        bias = np.zeros(10, np.float32)
        bias[c] = 100.0
        logits.set_weights([np.zeros_like(logits.kernel.numpy()), bias])
    return model


def test_stochastic_asr_single_pass_and_majority(two_faced):
    x = np.random.default_rng(0).random((200, 28, 28, 1)).astype(np.float32)
    target = np.ones(200, np.int64)
    stochastic.set_randomness(two_faced, "off")  # left "off" (channel 0 = never the target) ...
    scores, _ = evaluation.score(two_faced, x, x, target, targeted=True, passes=5)
    assert stochastic.stochastic_layers(two_faced)[0].randomness == "off"  # ... and restored afterwards
    stochastic.set_randomness(two_faced, "random")
    # ... but scored in random mode: each example hits class 1 with probability 1/2 per pass.
    # 1000 draws: std 0.016, tolerance 0.06 (> 3.5 sigma).
    assert scores["asr"] == pytest.approx(0.5, abs=0.06)
    assert scores["defense_rate"] == pytest.approx(1 - scores["asr"])
    # Majority of 5 with ties impossible: P(>= 3 of 5) = 1/2 per example; 200 examples: std 0.035.
    assert scores["asr_majority"] == pytest.approx(0.5, abs=0.15)
    assert scores["asr_std_over_passes"] > 0
    untargeted, _ = evaluation.score(two_faced, x, x, np.zeros(200, np.int64), targeted=False, passes=1)
    assert untargeted["asr"] == pytest.approx(0.5, abs=0.12)  # 200 draws: std 0.035


def test_first_n_all_targets_protocol(real_mnist):
    model = trained_model(real_mnist)
    lines = []
    result = evaluation.first_n_all_targets(model, real_mnist, "fgsm", num_images=6, eps=0.3, passes=2, batch_size=20,
                                            progress=lines.append)
    json.dumps(result)  # JSON-ready
    assert result["targets"] == "all" and result["targeted"] and result["attack_settings"] == {"eps": 0.3}
    r = result["results"]
    assert r["num_examples"] == 54 and len(lines) == 1 + 3  # a header and one line per batch of 20
    assert r["asr"] == r["asr_majority"] and r["asr_std_over_passes"] == 0  # deterministic model
    x, y = real_mnist.x_test[:6], real_mnist.y_test[:6]
    clean = np.argmax(model(x, training=False), axis=1) == y
    assert result["clean"]["accuracy"] == pytest.approx(clean.mean())
    # Recompute the ASR by hand from the same attack.
    idx, tgt = evaluation.make_pairs(y, "all")
    from hrs_tf.attacks import fgsm

    adv = fgsm(model, x[idx], tgt, eps=0.3, targeted=True)
    hit = np.argmax(model(adv, training=False), axis=1) == tgt
    assert r["asr"] == pytest.approx(hit.mean())
    linf = np.abs(adv - x[idx]).reshape(54, -1).max(axis=1)
    if hit.any():
        assert r["distortion_of_successful"]["linf"]["mean"] == pytest.approx(linf[hit].mean(), rel=1e-5)
    assert sum(r["asr_majority_by_target"].values()) == pytest.approx(
        sum(hit[tgt == t].mean() for t in range(10) if (tgt == t).any()))


def test_only_correct_and_untargeted(real_mnist):
    model = trained_model(real_mnist)
    x, y = real_mnist.x_test[:30], real_mnist.y_test[:30]
    correct = int((np.argmax(model(x, training=False), axis=1) == y).sum())
    result = evaluation.evaluate_protocol(model, real_mnist, "pgd", num_images=30, targets="none", only_correct=True,
                                          passes=1, progress=False, eps=0.3, eps_iter=0.05, nb_iter=10)
    assert result["results"]["num_examples"] == correct < 30  # measured 29 of 30 correct
    assert not result["targeted"] and result["results"]["asr"] > 0.9


def test_harness_errors(real_mnist):
    model = trained_model(real_mnist)
    with pytest.raises(ConfigError, match="does not take the setting 'kappa'"):
        evaluation.evaluate_protocol(model, real_mnist, "pgd", num_images=2, kappa=1.0)
    with pytest.raises(ConfigError, match="unknown attack 'foo'"):
        evaluation.evaluate_protocol(model, real_mnist, "foo", num_images=2)
    with pytest.raises(ConfigError, match="attack setting='gray' is not one of"):
        evaluation.run_attack(model, "pgd", real_mnist.x_test[:2], real_mnist.y_test[:2], False, setting="gray")
    with pytest.raises(ModelError, match=r"takes inputs of shape \(32, 32, 3\)"):
        evaluation.check_model_fits(models.build_base_model("cifar10"), real_mnist)

    def settings(name, given):
        return attacks.registry.get(name).parse_settings(given)

    with pytest.raises(ConfigError, match="outside"):
        settings("pgd", {"eps": "8"})
    assert settings("pgd", {"eps": "8/255"}) == {"eps": pytest.approx(8 / 255)}
    assert settings("pgd_l2", {"eps": "2.5"}) == {"eps": 2.5}  # an L2 radius may exceed 1
    assert settings("cw_l2", {"confidence": "2"}) == {"confidence": 2.0}
    assert settings("pgd", {"rand_init": "false", "nb_iter": "7"}) == {"rand_init": False, "nb_iter": 7}
    with pytest.raises(ConfigError, match="does not take the setting 'eps'"):
        settings("jsma_z", {"eps": "0.1"})
    assert stochastic.parse_fixed("0,2") == (0, 2) and stochastic.parse_fixed("off") == "off"
    with pytest.raises(ConfigError, match="fixed='zero' must be off, pinned or a path"):
        stochastic.parse_fixed("zero")


def test_a_model_must_fit_the_data_set_in_shape_and_classes(tmp_path, real_mnist):
    from hrs_tf import cli
    from hrs_tf.models import serialization

    inputs = keras.Input((28, 28, 1))
    five = keras.Model(inputs, keras.layers.Dense(5)(keras.layers.Flatten()(inputs)), name="five")
    with pytest.raises(ModelError, match="model 'five' outputs 5 classes, but mnist has 10"):
        evaluation.check_model_fits(five, real_mnist)
    path = tmp_path / "five.h5"
    serialization.save_model(five, path)
    with pytest.raises(ModelError, match="outputs 5 classes"):  # every tool loads through cli.load_model
        cli.load_model(path, dataset=real_mnist)
    ten = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(inputs)))
    evaluation.check_model_fits(ten, real_mnist)  # fits: no error
    small_inputs = keras.Input((8, 8, 1))
    small = keras.Model(small_inputs, keras.layers.Dense(10)(keras.layers.Flatten()(small_inputs)), name="small")
    with pytest.raises(ModelError, match=r"model 'small' takes inputs of shape \(8, 8, 1\)"):
        evaluation.check_model_fits(small, real_mnist)


def test_a_cw_batch_reports_each_search_step(real_mnist):
    """A long C&W batch is not silent: one line per binary-search step (count found, time, time left), prefixed with
    its batch, before the batch's own line."""
    from hrs_tf.evaluation import protocol
    from tests.randspike.helpers import linear_mnist_model

    model = linear_mnist_model(real_mnist, epochs=1, images=500)
    x, y = real_mnist.x_test[:4], (real_mnist.y_test[:4] + 1) % 10
    lines = []
    protocol.run_attack(model, "cw_l2", x, y, targeted=True, progress=lines.append, binary_search_steps=3,
                        max_iterations=20, batch_size=2)
    steps = [line for line in lines if "search step" in line]
    assert len(steps) == 6 and len(lines) == 8  # 3 steps x 2 batches, then each batch's line
    assert steps[0].startswith("[cw_l2 whitebox] batch 1/2 search step 1/3: ")
    assert "/2 found so far" in steps[0] and "s left in this batch" in steps[0] and "left" not in steps[2]
    assert lines[3].startswith("[cw_l2 whitebox] batch 1/2: 2/4 examples")
    found = [int(line.split(": ")[1].split("/")[0]) for line in steps[:3]]
    assert found == sorted(found)  # an example once found stays found
