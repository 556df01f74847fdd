"""The defense registry: one spec grammar, canonical texts, labels, how each defense is made, and refusals."""

import keras
import pytest

from hrs_tf import defenses
from hrs_tf.defenses import registry
from hrs_tf.errors import ConfigError

CORE = ["none", "sap", "dropout", "gaussian", "adv", "hrs"]


@pytest.mark.parametrize("text, canonical, label, make, source", [
    ("none", "none", "Base", "trained", None),
    ("sap", "sap", "SAP", "wrapped", "none"),
    ("sap:exact", "sap", "SAP", "wrapped", "none"),
    ("SAP:hrs", "sap:hrs", "SAP (HRS variant)", "wrapped", "none"),
    ("dropout", "dropout", "Dropout", "wrapped", "none"),
    ("dropout:0.30", "dropout:0.3", "Dropout 0.3", "wrapped", "none"),
    ("dropout:test_rate=0.1", "dropout:0.1", "Dropout 0.1", "wrapped", "none"),
    ("gaussian", "gaussian", "Gaussian", "trained", None),
    ("gaussian:0.2,0.1", "gaussian:0.2,0.1", "Gaussian (0.2, 0.1)", "trained", None),
    ("gaussian:inner_std=0.1", "gaussian:inner_std=0.1", "Gaussian (default, 0.1)", "trained", None),
    ("adv:8/255", "adv:0.03137254901960784", "Adv. training", "trained", None),
    ("adv:steps=10", "adv:steps=10", "Adv. training", "trained", None),
    ("adv:steps=5,warmup=3", "adv:steps=5,warmup=3", "Adv. training", "trained", None),
    ("adv:warmup=0", "adv", "Adv. training", "trained", None),
    ("hrs", "hrs:10x10", "HRS 10x10", "trained", None),
    ("hrs:5*5", "hrs:5x5", "HRS 5x5", "trained", None),
    ("hrs:5x5x5", "hrs:5x5x5", "HRS 5x5x5", "trained", None),
    ("hrs:2x2, of=10x10", "hrs:2x2,of=10x10", "HRS 2x2 of 10x10", "trained", "hrs:10x10"),
])
def test_specs_parse_to_canonical_texts_labels_and_sources(text, canonical, label, make, source):
    spec = defenses.parse(text)
    assert spec.text == canonical and spec.label == label and spec.make == make
    assert (spec.source().text if spec.source() else None) == source
    assert defenses.parse(spec.text) == spec and defenses.parse(spec) is spec  # canonical text round-trips


@pytest.mark.parametrize("text, message", [
    ("", "is empty"),
    ("magic", r"unknown defense 'magic'; choose one of none, sap, dropout, gaussian, adv, hrs"),
    ("dropout:1.5", r"defense 'dropout:1.5': test_rate='1.5' must be in \[0, 1\) \(grammar: dropout\[:R\]\)"),
    ("sap:approx", "SAP variant='approx' is not one of exact, hrs"),
    ("gaussian:0.1,0.1,0.1", r"too many arguments; the grammar is gaussian\[:INIT,INNER\]"),
    ("hrs:5x5,of=3x3,of=2x2", "gives of twice"),
    ("dropout:rate=0.1", "defense 'dropout' has no argument 'rate'; its arguments: test_rate"),
    ("adv:eps=9", "outside"),
    ("adv:warmup=-1", "warmup"),
    ("hrs:0x5", "need 1 to 3 blocks, each with at least one channel"),
])
def test_bad_specs_are_refused_in_one_line(text, message):
    with pytest.raises(ConfigError, match=message) as info:
        defenses.parse(text)
    assert "\n" not in str(info.value)


def test_listing_and_the_papers_settings_come_from_the_defenses_own_modules():
    assert defenses.names()[:len(CORE)] == CORE
    listing = defenses.listing()
    for name in CORE:
        assert f"| `{defenses.get(name).grammar()}` | {defenses.get(name).make} |" in listing
    assert "| `hrs[:AxB[xC],of=AxB]` | trained |" in listing
    assert [s.text for s in defenses.compared_in("hrs_paper")] == [
        "none", "sap", "sap:hrs", "dropout:0.1", "dropout:0.3", "gaussian", "adv:steps=10", "hrs:5x5", "hrs:10x10"]
    assert defenses.compared_in("no such paper") == []


def test_registration_is_checked(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    class Spaced(defenses.Defense):
        name = "two words"

    with pytest.raises(ConfigError, match="needs a name without"):
        defenses.register(Spaced)

    class Unmade(defenses.Defense):
        name = "unmade"
        make = "grown"

    with pytest.raises(ConfigError, match="make of defense 'unmade'='grown' is not one of"):
        defenses.register(Unmade)

    class Clash(defenses.Defense):
        name = "sap"

    with pytest.raises(ConfigError, match="defense 'sap' is registered twice"):
        defenses.register(Clash)


def test_trained_and_derived_defenses_refuse_the_other_way_of_making():
    keras.utils.set_random_seed(0)
    from hrs_tf import models

    base = models.build_base_model("mnist")
    with pytest.raises(ConfigError, match="defense 'gaussian' is trained; it is not made from a trained model"):
        defenses.parse("gaussian").apply(base)
    with pytest.raises(ConfigError, match="defense 'sap' is wrapped; it is not trained"):
        defenses.parse("sap").defense.fit({}, None, epochs=1)


def test_a_list_of_specs_keeps_commas_inside_specs():
    assert [s.text for s in defenses.parse_list("none,gaussian:0.2,0.1,hrs:2x2,of=5x5,adv:0.3,steps=10")] == [
        "none", "gaussian:0.2,0.1", "hrs:2x2,of=5x5", "adv:0.3,steps=10"]
    assert [s.text for s in defenses.parse_list(["sap", "dropout:0.1", ""])] == ["sap", "dropout:0.1"]
    with pytest.raises(ConfigError, match="unknown defense 'magic'"):
        defenses.parse_list("magic,sap")
