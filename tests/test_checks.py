"""The number checks shared by every setting (hrs_tf.checks)."""

import pytest

from hrs_tf import checks
from hrs_tf.errors import ConfigError


def test_numbers_and_fractions():
    assert checks.number("8/255", "eps") == pytest.approx(8 / 255) and checks.number(3, "n") == 3.0
    assert checks.fraction("0.3") == 0.3 and checks.fraction(1) == 1.0
    assert checks.rate("0") == 0.0 and checks.count("7", "n") == 7 and checks.count(4.0, "n") == 4
    assert checks.positive("1e-3", "lr") == 1e-3 and checks.nonnegative(0, "k") == 0.0


@pytest.mark.parametrize("call, message", [
    (lambda: checks.number("a/b", "eps"), "eps='a/b' is not a number or a fraction like 8/255"),
    (lambda: checks.number("1/0", "eps"), "is not a number or a fraction"),
    (lambda: checks.number(float("nan"), "x"), "is not a finite number"),
    (lambda: checks.number(True, "x"), "x=True is not a number"),
    (lambda: checks.fraction(8, "eps"), r"eps=8 is outside \[0, 1\] \(pixels are scaled to \[0, 1\]; write 8/255, not 8\)"),
    (lambda: checks.fraction(0, "gamma", allow_zero=False), r"outside \(0, 1\]"),
    (lambda: checks.rate(1.0, "test_rate"), r"test_rate=1.0 must be in \[0, 1\)"),
    (lambda: checks.count(2.5, "n"), "n=2.5 is not an integer"),
    (lambda: checks.count("x", "n"), "n='x' is not an integer"),
    (lambda: checks.count(0, "epochs", minimum=1), "epochs=0 must be at least 1"),
    (lambda: checks.positive(0, "lr"), "lr=0 must be a positive number"),
    (lambda: checks.choice("c", "mode", ("a", "b")), "mode='c' is not one of a, b"),
])
def test_bad_values_are_one_line_errors_naming_the_setting(call, message):
    with pytest.raises(ConfigError, match=message):
        call()
