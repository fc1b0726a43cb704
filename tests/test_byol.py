import math

import torch
from torch import nn

from ssl_zoo.methods.byol import cosine_tau, update_momentum


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
    taus = [cosine_tau(k, total, 0.99) for k in range(total + 1)]
    assert math.isclose(taus[0], 0.99) and math.isclose(taus[-1], 1.0)
    assert math.isclose(taus[50], 0.995)  # half way: 1 - 0.01 * (cos(pi/2) + 1) / 2
    assert all(a <= b for a, b in zip(taus, taus[1:]))
