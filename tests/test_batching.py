"""Length-grouped batching (stage2.group_by_length): its order is a seeded permutation per epoch (a resumed run
replays it), and it pads less than random batches; the padding share is counted by hand on small cases."""

import random

from workflow_scripts.train.loop import SeededLengthGroupedSampler, padding_share


def test_padding_share_by_hand():
    assert padding_share([5, 5, 5, 5], 2, 1, grouped=False, seed=0) == 0.0
    # one batch [1, 3]: 2 x 3 positions, 4 real -> 1/3 padding
    assert abs(padding_share([1, 3], 2, 1, grouped=False, seed=0) - 1 / 3) < 1e-12
    # one batch [2, 2, 8]: 3 x 8 positions, 12 real -> 1/2 padding, whatever the order
    assert padding_share([2, 8, 2], 3, 1, grouped=True, seed=5) == 0.5


def test_grouped_order_is_a_seeded_permutation_per_epoch():
    lengths = [random.Random(i).randint(10, 500) for i in range(400)]
    a = SeededLengthGroupedSampler(16, lengths, seed=3)
    first = list(a)
    assert sorted(first) == list(range(400)) and list(a) == first  # same epoch, same order
    a.set_epoch(1)
    assert list(a) != first
    b = SeededLengthGroupedSampler(16, lengths, seed=3)
    b.set_epoch(1)
    assert list(b) == list(a)  # a resumed run (a new sampler told the epoch) replays it


def test_grouping_pads_far_less_than_random_batches():
    lengths = [random.Random(i).randint(10, 500) for i in range(400)]
    grouped = padding_share(lengths, 4, 4, grouped=True, seed=0)
    uniform = padding_share(lengths, 4, 4, grouped=False, seed=0)
    assert uniform > 0.3 and grouped < uniform / 3
