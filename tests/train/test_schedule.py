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
