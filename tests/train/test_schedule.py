"""Learning rate: warmup then cosine to the floor, a pure function of the step."""

import pytest

from selfsup.train.schedule import lr_at


def test_warmup_peak_and_floor():
    """Rises linearly to the peak, reaches the floor at the end, never below it."""
    kw = dict(peak=1.0, warmup=10, total=110, min_ratio=0.1)
    assert lr_at(0, **kw) == pytest.approx(0.1)
    assert lr_at(9, **kw) == pytest.approx(1.0)
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(60, **kw) == pytest.approx(0.55)
    assert lr_at(110, **kw) == pytest.approx(0.1)
    assert min(lr_at(s, **kw) for s in range(200)) >= 0.1 - 1e-12


def test_unknown_length_keeps_peak():
    """With only a time budget there is no end to decay towards: the peak is held after warmup."""
    assert lr_at(1000, peak=2.0, warmup=5, total=None, min_ratio=0.1) == 2.0


def test_wsd_holds_the_peak_then_cools_down_to_just_above_the_floor():
    """wsd: peak after warmup until the last decay_fraction of the steps, then a monotone (1 - sqrt)
    cooldown whose last step runs at the floor; never below it."""
    kw = dict(peak=1.0, warmup=10, total=110, min_ratio=0.0, kind="wsd", decay_fraction=0.2)
    assert lr_at(9, **kw) == pytest.approx(1.0)
    assert all(lr_at(s, **kw) == 1.0 for s in range(10, 90))  # stable: 80 of the 100 steps after warmup
    cooldown = [lr_at(s, **kw) for s in range(90, 110)]
    assert all(a > b for a, b in zip(cooldown, cooldown[1:]))
    assert cooldown[-2] > 0.0 and cooldown[-1] == pytest.approx(0.0)
    assert lr_at(110, **kw) == pytest.approx(0.0)


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="cosine, wsd"):
        lr_at(50, peak=1.0, warmup=0, total=100, min_ratio=0.0, kind="linear")
