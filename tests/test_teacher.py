"""The momentum teacher that BYOL and data2vec share: the EMA update and its schedules."""

import math

import torch
from torch import nn

from ssl_zoo.methods.teacher import momentum, update_momentum


def test_ema_update_is_tau_weighted_average():
    online, target = nn.Linear(3, 2), nn.Linear(3, 2)
    before = [p.clone() for p in target.parameters()]
    update_momentum(online, target, tau=0.9)
    for t_old, t_new, o in zip(before, target.parameters(), online.parameters()):
        torch.testing.assert_close(t_new, 0.9 * t_old + 0.1 * o)


def test_ema_with_tau_one_keeps_target_and_zero_copies_online():
    online, target = nn.Linear(3, 2), nn.Linear(3, 2)
    before = [p.clone() for p in target.parameters()]
    update_momentum(online, target, tau=1.0)
    for t_old, t_new in zip(before, target.parameters()):
        torch.testing.assert_close(t_new, t_old)
    update_momentum(online, target, tau=0.0)
    for t, o in zip(target.parameters(), online.parameters()):
        torch.testing.assert_close(t, o)


def test_tau_schedule_goes_from_base_to_one_by_cosine():
    total = 100
    taus = [momentum("cosine", k, total, 0.99) for k in range(total + 1)]
    assert math.isclose(taus[0], 0.99) and math.isclose(taus[-1], 1.0)
    assert math.isclose(taus[50], 0.995)  # half way: 1 - 0.01 * (cos(pi/2) + 1) / 2
    assert all(a <= b for a, b in zip(taus, taus[1:]))
    # BYOL's formula, as it was written before the teacher was shared: the same floats
    assert taus == [1 - (1 - 0.99) * (math.cos(math.pi * min(1.0, k / total)) + 1) / 2 for k in range(total + 1)]


def test_teacher_momentum_rises_linearly_or_stays():
    assert momentum("linear", 0, 100, 0.99, 0.999) == 0.99
    assert abs(momentum("linear", 50, 100, 0.99, 0.999) - 0.9945) < 1e-12
    assert momentum("linear", 200, 100, 0.99, 0.999) == 0.999
    assert momentum("constant", 50, 100, 0.99, 0.999) == 0.99
