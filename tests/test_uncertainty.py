"""Paired comparisons and spreads over seeds, against hand computations and NumPy."""
import math

import numpy as np
import pytest
import torch

import vaelab
from vaelab import Comparison, Spread

# Four examples; a - b = (1, 0, 1, 2): mean 1, sample variance 2/3, so se = sqrt(2/3) / 2 = sqrt(1/6).
A = [3.0, 5.0, 4.0, 6.0]
B = [2.0, 5.0, 3.0, 4.0]
Z95 = 1.959963984540054


def test_compare_matches_a_hand_computation():
    c = vaelab.compare(A, B, unit="nats")
    assert c.difference == 1.0
    assert c.se == pytest.approx(math.sqrt(1 / 6), rel=1e-15)
    assert (c.low, c.high) == pytest.approx((1 - Z95 * math.sqrt(1 / 6), 1 + Z95 * math.sqrt(1 / 6)), rel=1e-15)
    assert (c.n, c.unit, c.confidence) == (4, "nats", 0.95)
    assert c.told_apart
    # the other order flips the sign and keeps the error
    flipped = vaelab.compare(B, A)
    assert (flipped.difference, flipped.se, flipped.low) == (-1.0, c.se, -c.high)
    # tensors (float32, with a graph), NumPy arrays and lists give the same numbers
    for a, b in ((torch.tensor(A, requires_grad=True), torch.tensor(B)), (np.array(A), np.array(B, dtype=np.float32)),
                 (torch.tensor([3, 5, 4, 6]), [2, 5, 3, 4])):
        assert vaelab.compare(a, b, unit="nats") == c


def test_pairing_removes_the_variation_common_to_both_models():
    gen = torch.Generator().manual_seed(0)
    hardness = torch.randn(2000, generator=gen, dtype=torch.float64) * 30  # per-image cost shared by both models
    a = hardness + 100.5 + torch.randn(2000, generator=gen, dtype=torch.float64)
    b = hardness + 100.0 + torch.randn(2000, generator=gen, dtype=torch.float64)
    c = vaelab.compare(a, b)
    unpaired = math.sqrt(float(a.var()) / 2000 + float(b.var()) / 2000)
    assert c.se == pytest.approx(math.sqrt(2 / 2000), rel=0.05)  # only the models' own noise is left
    assert unpaired > 20 * c.se
    assert c.told_apart and abs(c.difference - 0.5) < 3 * c.se
    assert not (c.difference - Z95 * unpaired > 0)  # unpaired, the same 0.5 nats could not be told apart


def test_identical_scores_differ_by_exactly_zero():
    scores = torch.tensor([81.25, 102.5, 97.0, 64.75], dtype=torch.float64)
    c = vaelab.compare(scores, scores.clone(), unit="nats")
    assert (c.difference, c.se, c.low, c.high) == (0.0, 0.0, 0.0, 0.0)
    assert not c.told_apart
    assert str(c) == "0 ± 0 nats"
    # a constant shift (exact in binary) has no spread: told apart with se 0, four significant digits
    shifted = vaelab.compare(scores + 0.5, scores, unit="nats")
    assert (shifted.difference, shifted.se, shifted.low, shifted.high) == (0.5, 0.0, 0.5, 0.5)
    assert shifted.told_apart and str(shifted) == "0.5 ± 0 nats"


def test_interval_uses_the_normal_quantile_of_the_confidence():
    one_sigma = math.erf(1 / math.sqrt(2))  # 0.6827: z = 1
    c = vaelab.compare(A, B, confidence=one_sigma)
    assert (c.low, c.high) == pytest.approx((1 - c.se, 1 + c.se), rel=1e-12)
    wide = vaelab.compare(A, B, confidence=0.999)
    assert wide.high - wide.difference == pytest.approx(3.2905267314919255 * wide.se, rel=1e-12)
    assert not wide.told_apart and wide.low < 0 < wide.high  # 1 / 0.408 = 2.45 standard errors: not at 99.9%


@pytest.mark.parametrize("difference, se, text", [
    (0.0891, 0.01234, "0.089 ± 0.012 bits/dim"),
    (-0.0891, 0.01234, "-0.089 ± 0.012 bits/dim"),
    (56789.0, 1234.5, "56800 ± 1200 bits/dim"),
    (-12.3456, 0.5, "-12.35 ± 0.50 bits/dim"),
    (0.5, 0.0996, "0.50 ± 0.10 bits/dim"),  # the SE rounds up to 0.100: two significant digits are 0.10
    (1e-5, 3.3e-7, "0.00001000 ± 0.00000033 bits/dim"),
    (-0.0004, 0.012, "0.000 ± 0.012 bits/dim"),  # no "-0.000"
    (3.14159, 0.0, "3.142 ± 0 bits/dim"),
    (-2.0, 1.0, "-2.0 ± 1.0 bits/dim"),
])
def test_comparison_prints_the_difference_to_the_place_of_its_two_digit_error(difference, se, text):
    c = Comparison(difference, se, difference - Z95 * se, difference + Z95 * se, 100, "bits/dim", 0.95)
    assert str(c) == text and f"{c}" == text
    assert str(c._replace(unit=None)) == text.removesuffix(" bits/dim")


def test_comparison_format_spec_applies_to_both_numbers_and_ipython_shows_the_text():
    c = vaelab.compare(A, B, unit="nats")
    assert f"{c:.3f}" == "1.000 ± 0.408 nats"
    assert str(c) == "1.00 ± 0.41 nats"
    formatters = pytest.importorskip("IPython.core.formatters")
    # myst-nb's glue stores IPython's text/plain: the text a chapter quotes, not the tuple's repr
    assert formatters.format_display_data(c)[0]["text/plain"] == "1.00 ± 0.41 nats"


def test_told_apart_when_the_interval_excludes_zero_on_either_side():
    assert Comparison(-0.3, 0.1, -0.5, -0.1, 50, None, 0.95).told_apart
    assert Comparison(0.3, 0.1, 0.1, 0.5, 50, None, 0.95).told_apart
    assert not Comparison(0.1, 0.1, -0.1, 0.3, 50, None, 0.95).told_apart


@pytest.mark.parametrize("a, b, message", [
    (torch.zeros(1000), torch.zeros(999), r"a has 1000 examples, b has 999: compare scores of the same held-out examples"),
    ([1.0], [2.0], r"at least 2 examples for a standard error; got 1"),
    (torch.zeros(4, 1), torch.zeros(4, 1),
     r"a must be 1-D, one score per example; got shape \(4, 1\): pass per-example scores, e.g. "
     r"result\[\"per_example\"\]\[\"nll\"\]"),
    (torch.zeros(4), torch.tensor(3.0), r"b must be 1-D, one score per example; got shape \(\)"),
    ([1.0, 2.0, 3.0], [1.0, float("nan"), float("inf")], r"b holds 2 non-finite value\(s\) among 3; the first is nan at index 1"),
    ({"nll": 1.0}, [1.0, 2.0], r"a must be per-example scores, not a dict of results: pass per-example scores"),
    (["x", "y"], [1.0, 2.0], r"a must hold numbers"),
    ([True, False], [1.0, 2.0], r"a must hold real numbers; got dtype torch.bool"),
])
def test_compare_says_what_it_expected(a, b, message):
    with pytest.raises(ValueError, match=message):
        vaelab.compare(a, b)


@pytest.mark.parametrize("options, message", [
    ({"confidence": 95}, r"confidence must be a number in \(0, 1\), e.g. 0.95 for a 95% interval; got 95"),
    ({"confidence": 0.0}, r"confidence must be a number in \(0, 1\)"),
    ({"confidence": 1.0}, r"confidence must be a number in \(0, 1\)"),
    ({"confidence": "0.95"}, r"confidence must be a number in \(0, 1\)"),
    ({"unit": 8}, r"unit must be a str such as 'bits/dim' or 'nats', or None; got 8"),
])
def test_compare_checks_confidence_and_unit(options, message):
    with pytest.raises(ValueError, match=message):
        vaelab.compare(A, B, **options)


def test_spread_matches_numpy():
    values = [7.12, 7.08, 7.10, 7.15, 7.05]
    s = vaelab.spread(torch.tensor(values, dtype=torch.float64), unit="bits/dim")
    assert isinstance(s, Spread)
    assert s.mean == pytest.approx(np.mean(values), rel=1e-15)
    assert s.sd == pytest.approx(np.std(values, ddof=1), rel=1e-12)
    assert s.se == pytest.approx(np.std(values, ddof=1) / math.sqrt(5), rel=1e-12)
    assert (s.n, s.min, s.max, s.unit) == (5, 7.05, 7.15, "bits/dim")
    assert str(s) == "7.100 ± 0.038 bits/dim (sd over 5 seeds)"  # sd = 0.0381
    assert str(vaelab.spread([7.12, 7.08, 7.10], unit="bits/dim")) == "7.100 ± 0.020 bits/dim (sd over 3 seeds)"
    assert str(vaelab.spread([-88.4, -90.0])) == "-89.2 ± 1.1 (sd over 2 seeds)"
    assert f"{vaelab.spread([1.0, 2.0]):.2f}" == "1.50 ± 0.71 (sd over 2 seeds)"


def test_spread_says_what_it_expected():
    with pytest.raises(ValueError, match=r"values must hold at least 2 figures \(one per seed\) for a spread; got 1"):
        vaelab.spread([7.1])
    with pytest.raises(ValueError, match=r"values holds 1 non-finite value\(s\) among 3; the first is inf at index 2"):
        vaelab.spread([7.1, 7.2, math.inf])
    with pytest.raises(ValueError, match=r"values must be 1-D"):
        vaelab.spread(np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"unit must be a str"):
        vaelab.spread([7.1, 7.2], unit=["bits"])
