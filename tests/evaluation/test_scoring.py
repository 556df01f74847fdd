"""The papers' decision rules (single pass, majority vote, MC average) and 8-bit rounding before judging."""

import keras
import numpy as np
import pytest

from hrs_tf import evaluation
from hrs_tf.errors import ConfigError


def test_decision_rules_on_known_probabilities():
    # 3 passes x 2 examples x 3 classes.
    probabilities = np.array([
        [[0.6, 0.4, 0.0], [0.1, 0.2, 0.7]],
        [[0.0, 0.9, 0.1], [0.1, 0.45, 0.45]],
        [[0.55, 0.45, 0.0], [0.3, 0.0, 0.7]],
    ])
    np.testing.assert_array_equal(evaluation.decide(probabilities, "single"), [[0, 2], [1, 1], [0, 2]])
    # Votes: example 0 has 0, 1, 0 -> 0; example 1 has 2, 1, 2 -> 2.
    np.testing.assert_array_equal(evaluation.decide(probabilities, "vote"), [0, 2])
    # MC average: example 0 means (0.383, 0.583, 0.033) -> 1 although the vote says 0.
    np.testing.assert_array_equal(evaluation.decide(probabilities, "mc"), [1, 2])
    # A tie in the vote goes to the smaller label.
    np.testing.assert_array_equal(evaluation.vote(np.array([[2], [1]]), 3), [1])
    with pytest.raises(ConfigError, match="decision rule='median' is not one of single, vote, mc"):
        evaluation.decide(probabilities, "median")


def threshold_model(threshold):
    """Class 1 iff pixel 0 exceeds ``threshold`` (logits 1000 * (x0 - threshold) for class 1, 0 for class 0)."""
    inputs = keras.Input((4,))
    dense = keras.layers.Dense(2)
    model = keras.Model(inputs, dense(inputs))
    kernel = np.zeros((4, 2), np.float32)
    kernel[0, 1] = 1000.0
    dense.set_weights([kernel, np.array([0.0, -1000.0 * threshold], np.float32)])
    return model


def test_rounding_to_8bit_before_judging_undoes_sub_grey_level_perturbations():
    model = threshold_model(128.2 / 255)
    x = np.full((3, 4), 128 / 255, np.float32)  # a grey level
    x_adv = x.copy()
    x_adv[:, 0] += 0.3 / 255  # crosses the threshold, but rounds back to the clean grey level
    target = np.ones(3, np.int64)
    plain, _ = evaluation.score(model, x, x_adv, target, targeted=True, passes=2)
    rounded, judged = evaluation.score(model, x, x_adv, target, targeted=True, passes=2, round_8bit=True)
    assert plain["asr"] == plain["asr_majority"] == plain["asr_mc_average"] == 1.0
    assert rounded["asr"] == rounded["asr_mc_average"] == 0.0 and rounded["rounded_to_8bit"]
    np.testing.assert_array_equal(judged["images"], x)  # the judged images are the rounded ones
    assert evaluation.round_to_8bit(np.array([0.3 / 255, 0.6 / 255]))[1] == pytest.approx(1 / 255)


def test_predict_probabilities_are_softmax_per_pass():
    model = threshold_model(0.5)
    x = np.array([[0.501, 0, 0, 0], [0.0, 0, 0, 0]], np.float32)
    probabilities = evaluation.predict_probabilities(model, x, passes=2, batch_size=1)
    assert probabilities.shape == (2, 2, 2)
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0)
    np.testing.assert_array_equal(evaluation.predict(model, x, passes=2), [[1, 0], [1, 0]])
