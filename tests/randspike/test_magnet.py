"""MagNet as the Random Spiking paper uses it (randspike.magnet; RS appendix A.1, REFERENCE section 9): autoencoder
structures, thresholds at the requested false-positive rate, the divergence score, rejection as an outcome, the
composite / attack models, the detector penalty, one-line errors and resumable autoencoder training."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from hrs_tf.attacks import losses
from hrs_tf.attacks.cw_l2 import cw_l2
from hrs_tf.data.dataset import Dataset
from hrs_tf.defenses import registry
from hrs_tf.errors import ConfigError
from hrs_tf.layers import stochastic
from hrs_tf.layers.defensive_dropout import DefensiveDropout
from hrs_tf.models import serialization
from randspike import decision, schemes
from randspike.defenses import magnet as magnet_defense
from randspike.magnet import autoencoders as ae
from randspike.magnet import detectors as det
from randspike.magnet import magnet as mg


def tiny_classifier(seed=0):
    """A small Dropout-scheme-like classifier (logits; DefensiveDropout kept on at test), untrained."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(16, activation="relu", name="fc1"),
                             DefensiveDropout(0.5, name="dropout"), keras.layers.Dense(10, name="logits")],
                            name="tiny_classifier")


def monotone_reformer():
    """An autoencoder of structure II set by hand to a steep increasing map of each pixel (centre taps only), so that
    the composite depends on its input without training."""
    reformer = ae.build_autoencoder((28, 28, 1), ae.STRUCTURE_II, name="reformer")
    for layer, gain in zip([l for l in reformer.layers if isinstance(l, keras.layers.Conv2D)], (4.0, 4.0, 8.0)):
        kernel, bias = np.zeros(layer.kernel.shape, np.float32), np.zeros(layer.bias.shape, np.float32)
        kernel[1, 1, 0, :] = gain
        bias[:] = -gain / 2
        layer.set_weights([kernel, bias])
    return reformer


def tiny_magnet(real_mnist, drop_rate=0.3, seed=0):
    """A MagNet of a hand-set reformer, untrained detectors (L2 on I, L1 on II, JSD T=10 on II) and an untrained
    classifier, with thresholds set on 200 test images (randomness off)."""
    keras.utils.set_random_seed(seed)
    classifier = tiny_classifier(seed)
    reformer = monotone_reformer()
    a1 = ae.build_autoencoder((28, 28, 1), ae.STRUCTURE_I, name="detector_I")
    a2 = ae.build_autoencoder((28, 28, 1), ae.STRUCTURE_II, name="detector_II")
    detectors = [det.ReconstructionDetector("detector_I_L2", a1, 2), det.ReconstructionDetector("detector_II_L1", a2, 1),
                 det.DivergenceDetector("JSD_T10", classifier, a2, 10.0)]
    magnet = mg.MagNet(classifier, reformer, detectors)
    with stochastic.randomness(classifier, stochastic.OFF):
        magnet.set_thresholds(real_mnist.x_test[:200], drop_rate)
    return magnet


def test_autoencoder_structures_I_and_II():
    one = ae.build_autoencoder((28, 28, 1), ae.STRUCTURE_I, name="I")
    two = ae.build_autoencoder((28, 28, 1), ae.STRUCTURE_II, name="II")
    assert ae.layer_summary(one) == ["Conv2D(3)", "AveragePooling2D", "Conv2D(3)", "Conv2D(3)", "UpSampling2D",
                                     "Conv2D(3)", "Conv2D(1)"]
    assert ae.layer_summary(two) == ["Conv2D(3)", "Conv2D(3)", "Conv2D(1)"]
    assert one.count_params() == 30 + 84 + 84 + 84 + 28 and two.count_params() == 30 + 84 + 28
    assert tuple(one.output_shape) == tuple(two.output_shape) == (None, 28, 28, 1)
    assert [tuple(layer.output.shape[1:]) for layer in one.layers[1:]] == [(28, 28, 3), (14, 14, 3), (14, 14, 3),
                                                                            (14, 14, 3), (28, 28, 3), (28, 28, 3),
                                                                            (28, 28, 1)]
    for layer in one.layers + two.layers:
        if isinstance(layer, keras.layers.Conv2D):
            assert layer.kernel_size == (3, 3) and layer.padding == "same"
            assert layer.activation is keras.activations.sigmoid
            assert layer.activity_regularizer.l2 == pytest.approx(1e-9)
    colour = ae.build_autoencoder((32, 32, 3), ae.STRUCTURE_II)
    assert tuple(colour.output_shape) == (None, 32, 32, 3)
    assert ae.check_structure("3, average,3") == (3, "average", 3)
    out = np.asarray(one(np.zeros((2, 28, 28, 1), np.float32)))
    assert out.min() > 0.0 and out.max() < 1.0  # sigmoid output


def test_threshold_gives_requested_false_positive_rate_on_held_out_clean_images(real_mnist, tmp_path):
    keras.utils.set_random_seed(0)
    model = ae.build_autoencoder((28, 28, 1), ae.STRUCTURE_II, name="detector_II")
    history = ae.train_autoencoder(model, real_mnist.x_train[:2000], 2, str(tmp_path / "ae.checkpoint.h5"), 0.1,
                                   seed=0, log=lambda line: None)
    assert history[1]["loss"] < history[0]["loss"]
    detector = det.ReconstructionDetector("detector_II_L1", model, 1)
    calibration, held_out = real_mnist.x_test[:2000], real_mnist.x_test[2000:4000]
    threshold = detector.set_threshold(calibration, 0.05)
    scores = detector.score(calibration)
    assert int((scores > threshold).sum()) == 100  # exactly k = floor(2000 * 0.05) calibration images rejected
    assert threshold == pytest.approx(np.sort(scores)[-101])  # the (k+1)-th largest
    fpr = float(detector.rejects(held_out).mean())
    # Binomial tolerance: the held-out count has sd sqrt(.05 * .95 / 2000) = 0.0049 and the threshold's own
    # quantile error about the same; 4 x sqrt(2) x 0.0049 = 0.028.
    assert abs(fpr - 0.05) < 0.028, fpr
    print(f"held-out false-positive rate {fpr:.4f} at drop rate 0.05")


def test_jensen_shannon_divergence_detector():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 10)).astype(np.float32) * 5, rng.normal(size=(5, 10)).astype(np.float32) * 5
    np.testing.assert_allclose(det.jensen_shannon(a, a, 10.0), 0.0, atol=1e-7)
    np.testing.assert_allclose(det.jensen_shannon(a, b, 10.0), det.jensen_shannon(b, a, 10.0), rtol=1e-6)
    assert np.all(np.asarray(det.jensen_shannon(a, b, 1.0)) > np.asarray(det.jensen_shannon(a, b, 40.0)))
    disjoint = det.jensen_shannon(np.array([[200.0, 0.0]]), np.array([[0.0, 200.0]]), 1.0)
    np.testing.assert_allclose(disjoint, np.log(2.0), rtol=1e-6)  # its maximum, ln 2
    classifier = tiny_classifier()
    one = ae.build_autoencoder((28, 28, 1), ae.STRUCTURE_II, name="one")
    two = ae.build_autoencoder((28, 28, 1), ae.STRUCTURE_I, name="two")
    x = rng.random((8, 28, 28, 1)).astype(np.float32)
    with stochastic.randomness(classifier, stochastic.OFF):
        same = det.DivergenceDetector("same", classifier, one, 10.0, reconstructor=one).score(x)
        forward = det.DivergenceDetector("ab", classifier, one, 10.0, reconstructor=two).score(x)
        backward = det.DivergenceDetector("ba", classifier, two, 10.0, reconstructor=one).score(x)
    np.testing.assert_array_equal(same, 0.0)
    np.testing.assert_allclose(forward, backward, rtol=1e-5)
    assert np.all(forward > 0)


def test_rejection_is_an_outcome_of_its_own(real_mnist):
    magnet = tiny_magnet(real_mnist)
    x, y = real_mnist.x_test[200:300], real_mnist.y_test[200:300]
    with stochastic.randomness(magnet.model, stochastic.OFF):
        scores = magnet.scores(x)
        rejected = np.zeros(len(x), bool)
        for d in magnet.detectors:
            rejected |= scores[d.name] > d.threshold
        assert 0 < rejected.sum() < len(x)
        labels = decision.labels(magnet, x, rule="single")
        reformed = np.clip(np.asarray(magnet.reformer(x)), 0, 1)
        plain = np.argmax(np.asarray(magnet.classifier(reformed)), axis=1)
        attack_out = np.asarray(magnet.attack_model()(x))
    np.testing.assert_array_equal(labels, np.where(rejected, decision.REJECTED, plain))
    # the attack model's argmax is MagNet's decision, class C = 10 for a rejection
    np.testing.assert_array_equal(np.argmax(attack_out, axis=1), np.where(rejected, 10, plain))
    assert decision.error_rate(magnet, x, y, rule="single", seed=0) == pytest.approx(np.mean(labels != y))
    untargeted = decision.attack_succeeded(labels, y, targeted=False)
    assert not untargeted[rejected].any() and np.array_equal(untargeted[~rejected], labels[~rejected] != y[~rejected])
    # MC average applies to the Dropout classifier; the (deterministic) reconstruction detectors reject under it too
    mc = decision.labels(magnet, x, rule="mc", passes=3, seed=1)
    by_reconstruction = (scores["detector_I_L2"] > magnet.detectors[0].threshold) | (
        scores["detector_II_L1"] > magnet.detectors[1].threshold)
    assert by_reconstruction.any() and np.all(mc[by_reconstruction] == decision.REJECTED)
    assert set(np.unique(mc)) <= set(range(-1, 10))


def test_composite_model_and_its_h5_round_trip(real_mnist, tmp_path):
    magnet = tiny_magnet(real_mnist)
    x = real_mnist.x_test[:16]
    with stochastic.randomness(magnet.model, stochastic.OFF):
        expected = np.asarray(magnet.classifier(np.clip(np.asarray(magnet.reformer(x)), 0, 1)))
        np.testing.assert_allclose(np.asarray(magnet.model(x)), expected, rtol=1e-5, atol=1e-6)
        attack_expected = np.asarray(magnet.attack_model()(x))
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in stochastic.walk(magnet.attack_model()))
    for model, want, name in ((magnet.model, expected, "composite.h5"), (magnet.attack_model(), attack_expected, "attack.h5")):
        serialization.save_model(model, tmp_path / name)
        loaded = serialization.load_model(tmp_path / name)  # safe mode
        with stochastic.randomness(loaded, stochastic.OFF):
            np.testing.assert_allclose(np.asarray(loaded(x)), want, rtol=1e-5, atol=1e-6)
    assert stochastic.is_stochastic(loaded)  # the Dropout classifier's layer survives the round trip


def test_detector_penalty_loss(real_mnist):
    magnet = tiny_magnet(real_mnist, drop_rate=0.1)
    x = real_mnist.x_test[300:340]
    targets = (real_mnist.y_test[300:340] + 1) % 10
    model = magnet.attack_model(penalty_weight=10.0)
    loss_fn = magnet.loss_fn(targeted=True)
    with stochastic.randomness(magnet.model, stochastic.OFF):
        scores = magnet.scores(x)
        penalty = sum(np.maximum(0.0, scores[d.name].astype(np.float64) - d.threshold) for d in magnet.detectors)
        xt = tf.constant(x)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(xt)
            out = model(xt)
            loss = loss_fn(tf.constant(targets), out)
            base = losses.margin(tf.constant(targets), out[:, :10])
            hinge = loss - base
        hinge_grad = tape.gradient(hinge, xt).numpy()
        loss_grad = tape.gradient(loss, xt).numpy()
    accepted = penalty == 0
    assert 0 < accepted.sum() < len(x)
    np.testing.assert_array_equal(loss.numpy()[accepted], base.numpy()[accepted])  # zero below every threshold
    np.testing.assert_allclose(loss.numpy()[~accepted] - base.numpy()[~accepted], 10.0 * penalty[~accepted],
                               rtol=1e-3, atol=1e-5)
    assert np.all(np.isfinite(loss_grad))
    norms = np.abs(hinge_grad).reshape(len(x), -1).sum(axis=1)
    assert np.all(norms[accepted] == 0) and np.all(norms[~accepted] > 0)
    untargeted = magnet.loss_fn(targeted=False)(tf.constant(targets), out).numpy()
    np.testing.assert_allclose(untargeted[~accepted], base.numpy()[~accepted] - 10.0 * penalty[~accepted], rtol=1e-3,
                               atol=1e-5)
    # an hrs_tf attack through the attack model: what it returns as a success is never rejected by MagNet
    with stochastic.randomness(magnet.model, stochastic.OFF):
        adv = cw_l2(model, x[:8], targets[:8], targeted=True, max_iterations=30, binary_search_steps=2,
                    learning_rate=0.1, initial_const=10.0)
        changed = np.any(adv != x[:8], axis=(1, 2, 3))
        assert changed.sum() >= 3 and accepted[:8].sum() < 8
        np.testing.assert_array_equal(magnet.labels(adv, rule="single")[changed], targets[:8][changed])


def test_bad_settings_give_one_line_config_errors(tmp_path):
    def message(fn, *args):
        with pytest.raises(ConfigError) as e:
            fn(*args)
        assert "\n" not in str(e.value)
        return str(e.value)

    for bad in (0, 1, 1.5, -0.1, "abc"):
        assert "drop_rate" in message(det.check_drop_rate, bad)
    assert "rejects 0 of the 500" in message(det.threshold_for, np.arange(500.0), 0.001)
    assert "'pool'" in message(ae.check_structure, [3, "pool"])
    assert "positive filter count" in message(ae.check_structure, [0])
    assert "even heights" in message(ae.build_autoencoder, (27, 27, 1), ae.STRUCTURE_I)
    folder = tmp_path / "magnet"
    assert "rejects 0 of the 100" in message(lambda: mg.train_magnet(tiny_classifier(), np.zeros((300, 28, 28, 1)), folder,
                                                                      dataset_name="mnist", epochs=1,
                                                                      validation_size=100))  # paper rate 0.001
    assert not folder.exists()  # refused before any training or file
    assert "svhn" in message(mg.paper_setup, "svhn")
    assert "drop_rate" in message(registry.parse, "magnet:2")
    assert registry.parse("magnet:0.004").args == {"drop_rate": 0.004, "ae_batch_size": 256}
    assert registry.parse("magnet").label == "MagNet" and registry.parse("magnet").source().text == "rs_dropout"


def test_autoencoder_training_resumes_at_the_next_epoch_after_a_kill(real_mnist, tmp_path):
    x = real_mnist.x_train[:256]
    checkpoint = str(tmp_path / "ae.checkpoint.h5")

    class Killed(Exception):
        pass

    def killed_after_first_epoch(line):
        if "epoch 1/2" in line:
            raise Killed(line)

    def fresh(seed):
        keras.utils.set_random_seed(seed)
        return ae.build_autoencoder((28, 28, 1), ae.STRUCTURE_II, name="ae")

    with pytest.raises(Killed):
        ae.train_autoencoder(fresh(0), x, 2, checkpoint, 0.1, seed=5, log=killed_after_first_epoch)
    lines = []
    resumed = fresh(99)  # other initial weights: the checkpoint's must replace them
    history = ae.train_autoencoder(resumed, x, 2, checkpoint, 0.1, seed=5, log=lines.append)
    assert "resuming" in lines[0] and "after epoch 1" in lines[0]
    assert [line.split(":")[0] for line in lines[1:]] == ["autoencoder epoch 2/2"]
    assert [h["epoch"] for h in history] == [1, 2]
    straight = fresh(0)
    ae.train_autoencoder(straight, x, 2, str(tmp_path / "straight.checkpoint.h5"), 0.1, seed=5, log=lambda line: None)
    for a, b in zip(resumed.get_weights(), straight.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # as an uninterrupted run
    with pytest.raises(ConfigError, match="v_noise"):
        ae.train_autoencoder(fresh(0), x, 2, checkpoint, 0.2, seed=5, log=lambda line: None)


def test_paper_setups():
    mnist, fashion = mg.paper_setup("mnist"), mg.paper_setup("fashion_mnist")
    assert (mnist["v_noise"], mnist["epochs"], mnist["drop_rate"]) == (0.1, 100, 0.001)
    assert (fashion["v_noise"], fashion["epochs"], fashion["drop_rate"]) == (0.025, 400, 0.004)
    assert mnist["autoencoders"] == {"reformer": (3, "average", 3), "detector_I": (3, "average", 3), "detector_II": (3,)}
    assert [(d["autoencoder"], d["p"]) for d in mnist["detectors"]] == [("detector_I", 2), ("detector_II", 1)]
    assert set(fashion["autoencoders"].values()) == {(3,)} and mg.paper_setup("cifar10")["detectors"] == fashion["detectors"]
    assert [(d["kind"], d.get("p"), d.get("temperature")) for d in fashion["detectors"]] == [
        ("reconstruction", 1, None), ("divergence", None, 10.0), ("divergence", None, 40.0)]
    assert magnet_defense.MagNetDefense.default_epochs == 100 and magnet_defense.MagNetDefense.title == "MagNet"


def test_defense_trains_writes_and_loads_magnet(real_mnist, tmp_path):
    """The Fashion-MNIST setup (reconstruction + two divergence detectors), one epoch on 300 + 100 images."""
    data = Dataset("fashion_mnist", real_mnist.x_train[:400], real_mnist.y_train[:400], real_mnist.x_test[:100],
                   real_mnist.y_test[:100], "test")
    spec = registry.parse("magnet:0.02,ae_batch_size=50")
    output = str(tmp_path / "magnet.h5")
    lines = []
    defense = magnet_defense.MagNetDefense()
    defense.train(spec.args, data, output, epochs=1, seed=3, log=lines.append, source_model=tiny_classifier(),
                  validation_size=100, arch="wrn")
    names = ("reformer", "detector_II", "prober_T10", "prober_T40")
    assert sorted(os.listdir(tmp_path / "magnet.magnet")) == sorted(
        ["magnet.json", "classifier.h5"] + [f"{n}{s}" for n in names for s in (".h5", ".checkpoint.h5")])
    record = defense.record(output)
    assert record["validation_size"] == 100 and record["autoencoder_images"] == 300 and record["v_noise"] == 0.025
    assert record["batch_size"] == 50  # the spec's, not the published 256
    # One epoch on 300 images leaves every autoencoder on its starting plateau: said in the log and the record.
    fit, validation = real_mnist.x_train[:300].astype(np.float64), real_mnist.x_train[300:400].astype(np.float64)
    assert record["mean_image_mse"] == pytest.approx(np.mean((validation - fit.mean(0)) ** 2), rel=1e-9)
    assert record["unlearned_autoencoders"] == sorted(names)
    warning = [line for line in lines if line.startswith("WARNING: MagNet autoencoder(s)")]
    assert len(warning) == 1 and "no better than the mean training image" in warning[0] and "not a working MagNet" \
        in warning[0] and "after 1 epochs on 300 images" in warning[0]
    assert set(record["thresholds"]) == {"detector_II_L1", "JSD_T10", "JSD_T40"}
    magnet = defense.decider(spec.args, output)
    assert magnet.thresholds == record["thresholds"]
    assert [type(d).__name__ for d in magnet.detectors] == ["ReconstructionDetector", "DivergenceDetector",
                                                            "DivergenceDetector"]
    assert magnet.detectors[1].classifier is magnet.classifier and magnet.detectors[2].temperature == 40.0
    composite = defense.load(spec.args, output)
    x = real_mnist.x_train[300:400]  # the validation images: 2 of 100 rejected by the L1 detector
    with stochastic.randomness(composite, stochastic.OFF):
        logits = np.asarray(composite(x))
    labels = magnet.labels(x, rule="single")
    with stochastic.randomness(magnet.model, stochastic.OFF):
        np.testing.assert_allclose(np.asarray(magnet.model(x)), logits, rtol=1e-5, atol=1e-6)
    assert int(magnet.detectors[0].rejects(x).sum()) == 2
    np.testing.assert_array_equal(labels[labels != decision.REJECTED], np.argmax(logits, 1)[labels != decision.REJECTED])
    lines.clear()
    defense.train(spec.args, data, output, epochs=1, seed=3, log=lines.append, source_model=tiny_classifier(),
                  validation_size=100)  # nothing left to train
    assert sum("already trained" in line for line in lines) == 4
    with pytest.raises(ConfigError, match="unknown_setting"):
        defense.train(spec.args, data, output, epochs=1, source_model=tiny_classifier(), unknown_setting=1)
    with pytest.raises(ConfigError, match="ae_batch_size"):  # the spec's now, not a setting: declared once
        defense.train(spec.args, data, output, epochs=1, source_model=tiny_classifier(), ae_batch_size=64)
    with pytest.raises(ConfigError, match=r"other settings \(batch_size: 50 there vs 64 now\)"):  # the checkpoints'
        defense.train(registry.parse("magnet:0.02,ae_batch_size=64").args, data, output, epochs=2, seed=3,
                      source_model=tiny_classifier(), validation_size=100)


def test_the_autoencoders_batch_is_part_of_the_spec_and_its_label():
    """At a reduced scale the published batch 256 leaves the autoencoders on their plateau (docs/randspike.md): a
    smaller batch is another MagNet, named so (fleets and report rows are named by the label)."""
    published = registry.parse("magnet:ae_batch_size=256")  # the default: the same spec as "magnet"
    assert (published.text, published.label, published.args["ae_batch_size"]) == ("magnet", "MagNet", 256)
    spec = registry.parse("magnet:0.004,ae_batch_size=64")
    assert (spec.label, spec.text, spec.args["ae_batch_size"]) == ("MagNet 0.004 (AE batch 64)",
                                                                   "magnet:0.004,ae_batch_size=64", 64)
    assert [s.label for s in schemes.parse_list("Dropout,magnet:ae_batch_size=64,RS-1".split(","))] == [
        "Dropout", "MagNet (AE batch 64)", "RS-1"]
    for bad in ("magnet:ae_batch_size=0", "magnet:ae_batch_size=x"):
        with pytest.raises(ConfigError, match="ae_batch_size"):
            registry.parse(bad)


def test_an_autoencoder_no_better_than_the_mean_image_is_named():
    fit = np.zeros((4, 2, 2, 1))
    fit[:2] = 1.0  # mean image 0.5 everywhere
    validation = np.zeros((2, 2, 2, 1))  # its mean-image MSE: 0.25
    histories = {"reformer": [{"epoch": 1, "validation_mse": 0.3}, {"epoch": 2, "validation_mse": 0.25}],
                 "detector_I": [{"epoch": 1, "validation_mse": 0.3}, {"epoch": 2, "validation_mse": 0.2499}],
                 "detector_II": [{"epoch": 1, "validation_mse": 0.01}, {"epoch": 2, "validation_mse": 0.9}]}
    baseline, unlearned = mg.unlearned_autoencoders(histories, fit, validation)
    assert baseline == 0.25 and unlearned == {"reformer": 0.25, "detector_II": 0.9}  # the last epoch decides
