"""CPCL form="paper": Eqs. 3-4 as printed (cosine similarity, no temperature, softmax over the
batch's P identities), against a per-sample loop written here, and reachable from the config."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from xreid import CPCL, CrossModalPrototypeMemory
from xreid.losses.cpcl import prototype_collaboration_loss


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float(a @ b / (a.norm() * b.norm()))


def _reference(features, labels, visible, infrared, modality=None):
    """-log softmax over the P distinct batch identities of cos(b, M_j), per memory; the mean
    over the batch, summed over the two memories (Eqs. 3-4). With ``modality`` each sample uses
    only its own modality's memory, mean per modality, summed."""
    ids = sorted(set(labels.tolist()))
    mems = (visible, infrared)

    def ce(b, y, mem):
        scores = {j: _cos(b, mem[j]) for j in ids}
        log_z = math.log(sum(math.exp(s) for s in scores.values()))
        return -(scores[y] - log_z)

    if modality is None:
        return sum(ce(b, y, mem) / len(labels)
                   for b, y in zip(features, labels.tolist()) for mem in mems)
    total = 0.0
    for code in (0, 1):
        rows = [(b, y) for b, y, m in zip(features, labels.tolist(), modality.tolist())
                if m == code]
        if rows:
            total += sum(ce(b, y, mems[code]) for b, y in rows) / len(rows)
    return total


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 9), st.integers(2, 8), st.integers(1, 6), st.integers(0, 10_000))
def test_paper_form_matches_loop(b, c, d, seed):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(b, d, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, c, (b,), generator=g)
    v, i = torch.randn(c, d, generator=g), torch.randn(c, d, generator=g)
    got = prototype_collaboration_loss(f, y, v, i, form="paper")
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(_reference(f, y, v, i), rel=1e-9, abs=1e-9)
    # float32 features: float32 arithmetic, error of a few float32 ulps per term
    got32 = prototype_collaboration_loss(f.float(), y, v, i, form="paper")
    assert float(got32) == pytest.approx(_reference(f, y, v, i), rel=1e-5, abs=1e-5)


def test_paper_form_is_scale_invariant_and_bounded():
    """Cosine: rescaling a feature changes nothing; without tau each term is at least
    log(1 + (P - 1) / e^2)."""
    g = torch.Generator().manual_seed(3)
    f = torch.randn(6, 5, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    v = torch.randn(5, 5, generator=g, dtype=torch.float64)
    scale = torch.tensor([0.01, 1.0, 7.0, 100.0, 3.0, 0.5], dtype=torch.float64)[:, None]
    a = prototype_collaboration_loss(f, y, v, v, form="paper")
    b = prototype_collaboration_loss(f * scale, y, v, v, form="paper")
    torch.testing.assert_close(a, b)
    best = prototype_collaboration_loss(v[y], y, v, v, form="paper")  # samples at their protos
    assert float(best) >= 2 * math.log(1 + 3 / math.e**2) - 1e-12


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


def test_paper_form_gradcheck_float64():
    g = torch.Generator().manual_seed(1)
    f = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 1, 3, 0])
    v = torch.randn(4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    i = torch.randn(4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda f_, v_, i_: prototype_collaboration_loss(f_, y, v_, i_, form="paper"),
        (f, v, i))


def test_memory_with_paper_form_matches_loop_in_both_modes():
    g = torch.Generator().manual_seed(4)
    c, d = 5, 6
    feats = torch.randn(20, d, generator=g)
    labels = torch.arange(c).repeat(4)
    modality = torch.tensor([0, 1]).repeat_interleave(10)
    batch_f = torch.randn(8, d, generator=g, dtype=torch.float64)
    batch_y = torch.tensor([0, 0, 3, 3, 0, 0, 3, 3])
    batch_m = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    for collaboration in (True, False):
        mem = CrossModalPrototypeMemory(c, d, collaboration=collaboration, form="paper")
        mem.initialize(feats, labels, modality)
        got = mem(batch_f.float(), batch_y, batch_m)
        want = _reference(batch_f, batch_y, mem.visible, mem.infrared,
                          None if collaboration else batch_m)
        assert float(got) == pytest.approx(want, rel=1e-5, abs=1e-5)
        assert "form='paper'" in repr(mem)


def test_paper_form_reachable_from_model_and_config(tmp_path):
    from xreid import XReID, build_backbone
    from xreid.engine import TrainConfig
    from xreid.engine.variants import get_variant

    net = XReID(build_backbone("tiny", img_size=(32, 16)), 4, cpcl_form="paper")
    assert net.memory is not None and net.memory.form == "paper"
    assert XReID(build_backbone("tiny", img_size=(32, 16)), 4).memory.form == "memory"
    cfg = TrainConfig.from_preset("demo", variant="cpcl/paper", root=str(tmp_path))
    assert cfg.model_overrides()["cpcl_form"] == "paper"
    assert get_variant("cpcl/memory").overrides["cpcl_form"] == "memory"
    with pytest.raises(ValueError, match="cpcl_form"):
        TrainConfig.from_preset("demo", cpcl_form="printed", root=str(tmp_path))


def test_form_is_checked():
    with pytest.raises(ValueError, match="form"):
        CPCL(form="literal")
    with pytest.raises(ValueError, match="form"):
        prototype_collaboration_loss(torch.randn(2, 3), torch.tensor([0, 1]),
                                     torch.randn(2, 3), torch.randn(2, 3), form="x")
    with pytest.raises(ValueError, match="form"):
        CrossModalPrototypeMemory(3, 4, form="x")
    assert "form='paper'" in repr(CPCL(form="paper"))


def test_default_form_unchanged():
    """The default form: cos / tau over all C identities (float32), as before."""
    g = torch.Generator().manual_seed(2)
    f, y = torch.randn(6, 4, generator=g), torch.tensor([0, 1, 2, 0, 1, 2])
    v, i = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    fn, vn, inn = F.normalize(f, dim=1), F.normalize(v, dim=1), F.normalize(i, dim=1)
    want = F.cross_entropy(fn @ vn.t() / 0.05, y) + F.cross_entropy(fn @ inn.t() / 0.05, y)
    torch.testing.assert_close(CPCL()(f, y, v, i), want)
