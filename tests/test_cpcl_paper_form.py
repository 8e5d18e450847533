"""CPCL form="paper": Eqs. 3-4 as printed, against a per-sample loop written here."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from xreid import CPCL
from xreid.losses.cpcl import prototype_collaboration_loss


def _reference(features, labels, visible, infrared):
    """-log softmax over the P distinct batch identities of <b, M_hat_j>, per memory, mean."""
    ids = sorted(set(labels.tolist()))
    pv = F.normalize(visible.double(), dim=1)
    pi = F.normalize(infrared.double(), dim=1)
    total = 0.0
    for b, y in zip(features.double(), labels.tolist()):
        for mem in (pv, pi):
            scores = {j: float(b @ mem[j]) for j in ids}
            log_z = math.log(sum(math.exp(s) for s in scores.values()))
            total += -(scores[y] - log_z) / len(labels)
    return total


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 9), st.integers(2, 8), st.integers(1, 6), st.integers(0, 10_000))
def test_paper_form_matches_loop(b, c, d, seed):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(b, d, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, c, (b,), generator=g)
    v, i = torch.randn(c, d, generator=g), torch.randn(c, d, generator=g)
    got = prototype_collaboration_loss(f, y, v, i, form="paper")
    assert float(got) == pytest.approx(_reference(f, y, v, i), rel=1e-5, abs=1e-5)


def test_paper_form_ignores_absent_identities_and_temperature():
    g = torch.Generator().manual_seed(0)
    f, y = torch.randn(4, 5, generator=g), torch.tensor([0, 0, 2, 2])
    v, i = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    base = CPCL(form="paper")(f, y, v, i)
    v2, i2 = v.clone(), i.clone()
    v2[[1, 3, 4, 5]] = torch.randn(4, 5, generator=g)  # rows of identities not in the batch
    i2[[1, 3, 4, 5]] *= -7
    assert torch.equal(CPCL(0.5, form="paper")(f, y, v2, i2), base)
    # the default form does depend on them
    assert not torch.equal(CPCL()(f, y, v2, i2), CPCL()(f, y, v, i))


def test_paper_form_gradient_float64():
    g = torch.Generator().manual_seed(1)
    f = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 1, 3, 0])
    v = torch.randn(4, 4, generator=g, dtype=torch.float64)
    i = torch.randn(4, 4, generator=g, dtype=torch.float64)
    # _cpcl computes in float32; check the float64 inputs' gradient against finite differences
    loss = prototype_collaboration_loss(f, y, v, i, form="paper")
    (grad,) = torch.autograd.grad(loss, f)
    assert torch.isfinite(grad).all()
    eps = 1e-3
    for k in range(f.numel()):
        d = torch.zeros_like(f).view(-1)
        d[k] = eps
        d = d.view_as(f)
        with torch.no_grad():
            num = (prototype_collaboration_loss(f + d, y, v, i, form="paper")
                   - prototype_collaboration_loss(f - d, y, v, i, form="paper")) / (2 * eps)
        assert float(grad.view(-1)[k]) == pytest.approx(float(num), abs=2e-3)


def test_form_is_checked():
    with pytest.raises(ValueError, match="form"):
        CPCL(form="literal")
    with pytest.raises(ValueError, match="form"):
        prototype_collaboration_loss(torch.randn(2, 3), torch.tensor([0, 1]),
                                     torch.randn(2, 3), torch.randn(2, 3), form="x")
    assert "form='paper'" in repr(CPCL(form="paper"))
