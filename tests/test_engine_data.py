"""The data order: seeded per epoch, sharded across ranks, each example at most once an epoch; and
the data position a checkpoint holds."""
from __future__ import annotations

import numpy as np

from mrmkg.engine.data import DataPosition, EpochSampler


def test_sampler_shards_and_is_seeded():
    a = [EpochSampler(40, 7, 4, 2, rank=r, world=2) for r in range(2)]
    assert a[0].steps_per_epoch == 40 // 16
    step = [np.concatenate(s.micro_batches(1, 1)) for s in a]
    assert not set(step[0]) & set(step[1])  # ranks never share an example within a step
    assert np.array_equal(EpochSampler(40, 7, 4, 2).permutation(3), EpochSampler(40, 7, 4, 2).permutation(3))
    assert not np.array_equal(EpochSampler(40, 7, 4, 2).permutation(0), EpochSampler(40, 7, 4, 2).permutation(1))
    # every example of an epoch is used at most once, across steps and ranks
    seen = np.concatenate([np.concatenate(s.micro_batches(0, k)) for s in a for k in range(a[0].steps_per_epoch)])
    assert len(seen) == len(set(seen.tolist())) == 32


def test_position_records_mean_losses_and_round_trips():
    sampler = EpochSampler(40, 7, 4, 2)  # 5 steps an epoch
    pos = DataPosition(sampler, total_steps=7)
    for loss in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0):
        pos.step_done(loss, lr=0.1, log_every=4)
    assert pos.history == [{"step": 4, "loss": 2.5, "lr": 0.1}]
    state = pos.state_dict()
    assert (state["epoch"], state["step_in_epoch"], state["samples"]) == (1, 1, 6 * 8)
    again = DataPosition(sampler, total_steps=7)
    again.load_state_dict(state)
    assert [np.array_equal(a, b) for a, b in zip(again.micro_batches(), sampler.micro_batches(1, 1))] == [True, True]
    again.step_done(7.0, lr=0.2, log_every=4)  # the last step records the mean since the previous record
    assert again.history[-1] == {"step": 7, "loss": 6.0, "lr": 0.2} and again.last_loss == 6.0
