"""The recipe flags shared by the Random Spiking tools: one definition, the settings every scheme accepts, a bad
network refused when the flags are parsed."""

import pytest
from absl import flags

from randspike import recipe_flags
from randspike.defenses.schemes import COMMON_SETTINGS


def parsed(argv, **options):
    values = flags.FlagValues()
    recipe_flags.define(flag_values=values, **options)
    values(["tool"] + argv)
    return values


def test_every_setting_a_scheme_accepts_has_a_flag_and_only_given_ones_are_passed_in_a_fixed_order():
    assert set(recipe_flags.RECIPE_FLAGS + recipe_flags.OPTIMISER_FLAGS) == set(COMMON_SETTINGS)
    values = parsed(["--learning_rate=0.02", "--train_images=500", "--augmentation=none"])
    assert list(recipe_flags.settings(values).items()) == [("augmentation", "none"), ("train_images", 500),
                                                          ("learning_rate", 0.02)]
    assert recipe_flags.settings(parsed([])) == {}


def test_a_tool_with_its_own_batch_size_leaves_the_optimiser_flags_out():
    values = parsed(["--arch=wrn", "--depth=10"], optimiser=False)
    assert "batch_size" not in values and "learning_rate" not in values
    assert recipe_flags.settings(values, optimiser=False) == {"arch": "wrn", "depth": 10}


def test_an_unknown_network_is_refused_at_parsing_unless_the_tool_takes_any_architecture():
    with pytest.raises(flags.IllegalFlagValueError, match="rs_mnist\|wrn"):
        parsed(["--arch=resnet"])
    assert recipe_flags.settings(parsed(["--arch=hash_mnist"], any_arch=True)) == {"arch": "hash_mnist"}
