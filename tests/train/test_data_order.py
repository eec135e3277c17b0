"""The data position is three integers, and the order they define is exact and world-independent."""

import numpy as np

from selfsup.train.data_order import DataOrder


def test_each_epoch_visits_every_block_once():
    """Within an epoch every block appears exactly once; epochs differ in order."""
    order = DataOrder(seed=3, n_blocks=10)
    first, e, c = order.peek(10)
    assert sorted(first.tolist()) == list(range(10)) and (e, c) == (1, 0)
    order.commit(e, c)
    second, _, _ = order.peek(10)
    assert sorted(second.tolist()) == list(range(10)) and not np.array_equal(first, second)


def test_resuming_from_state_continues_the_same_stream():
    """Saving (seed, epoch, cursor) mid-epoch and restoring gives the same next batches as not stopping,
    including across an epoch boundary."""
    a = DataOrder(seed=1, n_blocks=7)
    stream_a = []
    for _ in range(6):
        idx, e, c = a.peek(3)
        a.commit(e, c)
        stream_a.append(idx.tolist())
    b = DataOrder(seed=1, n_blocks=7)
    stream_b = []
    for i in range(6):
        if i == 2:
            b = DataOrder.from_state(b.state_dict())  # "resume"
        idx, e, c = b.peek(3)
        b.commit(e, c)
        stream_b.append(idx.tolist())
    assert stream_a == stream_b


def test_peek_does_not_advance():
    """The cursor moves only on commit (when an optimizer step is applied)."""
    o = DataOrder(seed=0, n_blocks=5)
    x, _, _ = o.peek(2)
    y, _, _ = o.peek(2)
    assert np.array_equal(x, y) and (o.epoch, o.cursor) == (0, 0)
