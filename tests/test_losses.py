import math

import torch
import torch.nn.functional as F

from ssl_zoo.losses import byol_loss, nt_xent


def nt_xent_direct(z1, z2, t):
    """The SimCLR paper's formula, one anchor at a time."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n2 = len(z)
    total = 0.0
    for i in range(n2):
        j = (i + n2 // 2) % n2
        sims = [math.exp(float(z[i] @ z[k]) / t) for k in range(n2) if k != i]
        total += -math.log(math.exp(float(z[i] @ z[j]) / t) / sum(sims))
    return total / n2


def test_nt_xent_matches_the_direct_formula():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    for t in (0.1, 0.5, 1.0):
        assert math.isclose(nt_xent(z1, z2, t).item(), nt_xent_direct(z1, z2, t), rel_tol=1e-5)


def test_nt_xent_rewards_aligned_views():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(16, 8, generator=g)
    assert nt_xent(z, z + 0.01 * torch.randn(16, 8, generator=g), 0.2) < nt_xent(z, torch.randn(16, 8, generator=g), 0.2)


def test_byol_loss_is_two_minus_two_cosine_and_stops_target_gradient():
    p = torch.tensor([[1.0, 0.0], [0.0, 2.0]], requires_grad=True)
    z = torch.tensor([[1.0, 0.0], [2.0, 0.0]], requires_grad=True)
    loss = byol_loss(p, z)
    assert math.isclose(loss.item(), ((2 - 2 * 1.0) + (2 - 2 * 0.0)) / 2)
    loss.backward()
    assert z.grad is None and p.grad is not None
