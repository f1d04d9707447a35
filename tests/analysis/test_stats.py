"""Seed statistics against hand-computed values (t quantiles from a printed t-table)."""
import math

import pytest

from outeffhop_jax.analysis import stats


def test_t_interval_three_seeds_by_hand():
  # values 1, 2, 6: mean 3, s^2 = ((-2)^2 + (-1)^2 + 3^2) / 2 = 7, sem = sqrt(7/3);
  # t_{0.975, 2} = 4.302653 (t-table) -> half width 4.302653 * 1.527525 = 6.572375.
  iv = stats.t_interval([1.0, 2.0, 6.0])
  assert iv.mean == pytest.approx(3.0)
  assert iv.half_width == pytest.approx(4.302653 * math.sqrt(7 / 3), rel=1e-6)
  assert iv.n == 3 and not iv.excludes_zero()


def test_t_interval_confidence_and_single_seed():
  # t_{0.95, 4} = 2.131847 (90 % two-sided, 4 degrees of freedom); values 0..4: s = sqrt(2.5).
  iv = stats.t_interval([0, 1, 2, 3, 4], confidence=0.90)
  assert iv.half_width == pytest.approx(2.131847 * math.sqrt(2.5) / math.sqrt(5), rel=1e-6)
  one = stats.t_interval([7.5])
  assert one.mean == 7.5 and math.isnan(one.half_width) and not one.excludes_zero()
  assert stats.format_interval(one) == "7.500"


def test_paired_difference_removes_shared_seed_noise():
  # Seeds move both variants together (10, 20, 30); the variant is lower by 1.0, 1.2, 0.8.
  base = [10.0, 20.0, 30.0]
  var = [9.0, 18.8, 29.2]
  d = stats.paired_difference(var, base)
  assert d.mean == pytest.approx(-1.0)
  # differences -1, -1.2, -0.8: s = 0.2, sem = 0.2 / sqrt(3); t_{0.975, 2} = 4.302653.
  assert d.half_width == pytest.approx(4.302653 * 0.2 / math.sqrt(3), rel=1e-6)
  assert d.excludes_zero()
  # Unpaired, the same numbers are far inside the noise.
  assert stats.t_interval(var).half_width > 10
  rel = stats.relative_paired_difference([9.0, 18.0], [10.0, 20.0])
  assert rel.mean == pytest.approx(-0.1) and rel.half_width == pytest.approx(0.0, abs=1e-12)
  assert stats.format_interval(d, digits=2, signed=True) == f"-1.00 ± {d.half_width:.2f}"


@pytest.mark.parametrize("call, match", [
    (lambda: stats.t_interval([]), "at least one value"),
    (lambda: stats.t_interval([1.0, float("nan")]), "finite"),
    (lambda: stats.t_interval([1.0, 2.0], confidence=1.5), "confidence"),
    (lambda: stats.paired_difference([1.0, 2.0], [1.0]), "same seeds"),
    (lambda: stats.relative_paired_difference([1.0], [0.0]), "zero"),
])
def test_bad_input_is_named(call, match):
  with pytest.raises(ValueError, match=match):
    call()
