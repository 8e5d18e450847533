"""CPCL, batch-hard triplet and the X-ReID loss (Eq. 10), against slow references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from tolerance import rounding_tol

from xreid import (
    CPCL,
    CrossModalPrototypeMemory,
    LossOutput,
    PrototypeCollaborationLoss,
    TripletLoss,
    XReIDLoss,
)
from xreid.models.output import XReIDOutput

# --------------------------------------------------------------------------- references


def ref_cpcl(feats, labels, vis, ir, tau):
    """Eqs. 3-4 with temperature, one sample and one memory at a time."""
    total = torch.zeros((), dtype=torch.float64)
    for i in range(len(labels)):
        f = feats[i].double() / feats[i].double().norm()
        for table in (vis, ir):
            p = table.double() / table.double().norm(dim=1, keepdim=True)
            logits = (p @ f) / tau
            total = total - (logits[labels[i]] - torch.logsumexp(logits, 0)) / len(labels)
    return total


def ref_triplet(feats, labels, margin):
    """Batch-hard triplet, an O(B^2) Python loop (Hermans et al.); invalid anchors skipped."""
    x = feats.reshape(len(labels), -1).double()
    losses = []
    for a in range(len(labels)):
        d_ap, d_an = None, None
        for j in range(len(labels)):
            dist = torch.sqrt(torch.clamp(((x[a] - x[j]) ** 2).sum(), min=1e-12))
            if j != a and labels[j] == labels[a]:
                d_ap = dist if d_ap is None or dist > d_ap else d_ap
            elif labels[j] != labels[a]:
                d_an = dist if d_an is None or dist < d_an else d_an
        if d_ap is None or d_an is None:
            continue
        if margin is None:
            losses.append(torch.log1p(torch.exp(d_ap - d_an)))
        else:
            losses.append(torch.clamp(d_ap - d_an + margin, min=0))
    if not losses:
        return x.sum() * 0
    return torch.stack(losses).mean()


def authors_triplet(feats, labels, margin=0.3):
    """The reference code's formulation (loss/triplet_loss.py): self counts as positive."""
    n = feats.shape[0]
    xx = feats.pow(2).sum(1, keepdim=True).expand(n, n)
    dist = (xx + xx.t() - 2 * feats @ feats.t()).clamp(min=1e-12).sqrt()
    is_pos = labels.expand(n, n).eq(labels.expand(n, n).t())
    dist_ap = torch.max(dist[is_pos].contiguous().view(n, -1), 1, keepdim=True)[0].squeeze(1)
    dist_an = torch.min(dist[~is_pos].contiguous().view(n, -1), 1, keepdim=True)[0].squeeze(1)
    return F.margin_ranking_loss(dist_an, dist_ap, torch.ones_like(dist_an), margin=margin)


def pk_labels(p=4, k=4):
    return torch.arange(p).repeat_interleave(k)


# --------------------------------------------------------------------------- CPCL


def test_cpcl_matches_eqs_3_4_and_gradients():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(12, 6, generator=g).double().requires_grad_(True)
    vis = torch.randn(5, 6, generator=g).double().requires_grad_(True)
    ir = (torch.randn(5, 6, generator=g) * 3).double().requires_grad_(True)  # not unit rows
    labels = torch.randint(0, 5, (12,), generator=g)
    loss = PrototypeCollaborationLoss(temperature=0.1)(feats, labels, vis, ir)
    ref = ref_cpcl(feats, labels, vis, ir, 0.1)
    # the loss computes in float32: cosines (two norms and a dot product over d = 6), softmax
    # over C = 5, mean over B = 12, logits up to 1 / tau = 10; the backward pass doubles it
    tol = rounding_tol(torch.float32, 2 * (3 * 6 + 5 + 12 + 4), scale=10)
    torch.testing.assert_close(loss.double(), ref, **tol)
    grads = torch.autograd.grad(loss, (feats, vis, ir))
    grads_ref = torch.autograd.grad(ref, (feats, vis, ir))
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a.double(), b, **tol)
    assert CPCL is PrototypeCollaborationLoss and "temperature=0.1" in repr(CPCL(0.1))


def test_cpcl_validate_false_is_the_same_value():
    from xreid.losses import prototype_collaboration_loss

    g = torch.Generator().manual_seed(1)
    feats, vis, ir = (torch.randn(n, 6, generator=g) for n in (9, 4, 4))
    labels = torch.randint(0, 4, (9,), generator=g)
    for form in ("memory", "paper"):
        checked = prototype_collaboration_loss(feats, labels, vis, ir, 0.07, form)
        unchecked = prototype_collaboration_loss(feats, labels, vis, ir, 0.07, form,
                                                 validate=False)
        assert torch.equal(checked, unchecked)
    with pytest.raises(ValueError, match="labels: expected values in"):
        prototype_collaboration_loss(feats, labels + 4, vis, ir)


def test_cpcl_equals_authors_cluster_memory_logits():
    """logits = normalize(x) @ M.T / 0.05 then CE, for each memory (docs/differences.md)."""
    feats, labels = torch.randn(8, 4), torch.randint(0, 3, (8,))
    vis, ir = F.normalize(torch.randn(3, 4), dim=1), F.normalize(torch.randn(3, 4), dim=1)
    x = F.normalize(feats, dim=1)
    expected = F.cross_entropy(x.mm(vis.t()) / 0.05, labels) + F.cross_entropy(
        x.mm(ir.t()) / 0.05, labels)
    torch.testing.assert_close(CPCL()(feats, labels, vis, ir), expected)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((torch.randn(4, 3), torch.zeros(4, dtype=torch.long), torch.randn(2, 5),
          torch.randn(2, 3)), "visible: expected size 3 at dim 1"),
        ((torch.randn(4, 3), torch.zeros(4, dtype=torch.long), torch.randn(2, 3),
          torch.randn(3, 3)), "infrared: expected 2 rows"),
        ((torch.randn(4, 3), torch.zeros(3, dtype=torch.long), torch.randn(2, 3),
          torch.randn(2, 3)), "labels: expected 4 entries"),
        ((torch.randn(4, 3), torch.full((4,), 2), torch.randn(2, 3), torch.randn(2, 3)),
         r"labels: expected values in \[0, 2\)"),
        ((torch.randn(4, 3), torch.zeros(4), torch.randn(2, 3), torch.randn(2, 3)),
         "labels: expected an integer"),
        ((torch.randn(4), torch.zeros(4, dtype=torch.long), torch.randn(2, 3),
          torch.randn(2, 3)), "features: expected a 2-D"),
    ],
)
def test_cpcl_bad_inputs(args, match):
    with pytest.raises(ValueError, match=match):
        CPCL()(*args)


def test_cpcl_constructor_and_empty_batch():
    with pytest.raises(ValueError, match="temperature"):
        CPCL(temperature=0)
    feats = torch.zeros(0, 3, requires_grad=True)
    loss = CPCL()(feats, torch.zeros(0, dtype=torch.long), torch.randn(2, 3), torch.randn(2, 3))
    assert loss.item() == 0.0
    loss.backward()


def test_cpcl_autocast_bf16_is_float32():
    layer = torch.nn.Linear(4, 4)
    vis, ir = torch.randn(3, 4), torch.randn(3, 4)
    labels = torch.randint(0, 3, (6,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feats = layer(torch.randn(6, 4))
        loss = CPCL()(feats, labels, vis, ir)
    assert feats.dtype == torch.bfloat16 and loss.dtype == torch.float32
    torch.testing.assert_close(loss, CPCL()(feats.float(), labels, vis, ir))
    loss.backward()
    assert torch.isfinite(layer.weight.grad).all()


# --------------------------------------------------------------------------- triplet


@pytest.mark.parametrize("margin", [0.3, 0.0, None])
def test_triplet_matches_naive_loop_values_and_gradients(margin):
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(16, 7, generator=g).double().requires_grad_(True)
    labels = pk_labels()[torch.randperm(16, generator=g)]
    loss = TripletLoss(margin)(feats, labels)
    ref = ref_triplet(feats, labels, margin)
    # float32 inside: distances over d = 7, hardest of 16, mean over 16; backward doubles it
    tol = rounding_tol(torch.float32, 2 * (2 * 7 + 16 + 16 + 4))
    torch.testing.assert_close(loss.double(), ref, **tol)
    (grad,) = torch.autograd.grad(loss, feats)
    (grad_ref,) = torch.autograd.grad(ref, feats)
    torch.testing.assert_close(grad.double(), grad_ref, **tol)


def test_triplet_equals_authors_formulation_on_pk_batches():
    feats = torch.randn(16, 5) * 0.3
    labels = pk_labels()
    torch.testing.assert_close(TripletLoss(0.3)(feats, labels), authors_triplet(feats, labels))


def test_triplet_anchors_without_positive_or_negative():
    feats = torch.randn(5, 3, requires_grad=True)
    # anchors 3 and 4 are singletons (no positive): left out of the mean
    labels = torch.tensor([0, 0, 0, 1, 2])
    loss = TripletLoss(0.5)(feats, labels)
    torch.testing.assert_close(loss, ref_triplet(feats, labels, 0.5).float())
    # one identity only (no negatives) and all singletons: zero loss, zero gradient
    for labels in (torch.zeros(5, dtype=torch.long), torch.arange(5)):
        loss = TripletLoss()(feats, labels)
        assert loss.item() == 0.0
        (grad,) = torch.autograd.grad(loss, feats)
        assert torch.equal(grad, torch.zeros_like(grad))
    empty = TripletLoss()(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    assert empty.item() == 0.0


@given(
    b=st.integers(1, 12),
    ids=st.integers(1, 4),
    dim=st.integers(1, 6),
    margin=st.sampled_from([0.3, None]),
    seed=st.integers(0, 2**16),
)
def test_triplet_property_matches_reference(b, ids, dim, margin, seed):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(b, dim, generator=g).double()
    labels = torch.randint(0, ids, (b,), generator=g)
    loss = TripletLoss(margin)(feats, labels)
    assert loss.shape == () and torch.isfinite(loss) and loss.item() >= 0
    torch.testing.assert_close(loss.double(), ref_triplet(feats, labels, margin),
                               **rounding_tol(torch.float32, 2 * dim + 2 * b + 4))


def test_triplet_flattens_and_validates():
    feats = torch.randn(8, 2, 3)
    labels = pk_labels(2, 4)
    torch.testing.assert_close(TripletLoss()(feats, labels),
                               TripletLoss()(feats.reshape(8, 6), labels))
    with pytest.raises(ValueError, match="labels: expected 8 entries"):
        TripletLoss()(feats, labels[:7])
    with pytest.raises(ValueError, match="features: expected a tensor"):
        TripletLoss()(torch.randn(8), labels)
    with pytest.raises(ValueError, match="labels: expected an integer"):
        TripletLoss()(feats, labels.float())
    with pytest.raises(ValueError, match="margin"):
        TripletLoss(-1.0)
    assert "margin=None" in repr(TripletLoss(None))


def test_triplet_autocast_and_inputs_unchanged():
    feats = torch.randn(8, 4)
    labels = pk_labels(2, 4)
    before = feats.clone()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = TripletLoss()(feats.bfloat16(), labels)
    assert loss.dtype == torch.float32 and torch.equal(feats, before)


def test_losses_compile_eager_fullgraph():
    feats = torch.randn(8, 4, requires_grad=True)
    labels = pk_labels(2, 4)
    vis, ir = torch.randn(2, 4), torch.randn(2, 4)
    tri = torch.compile(TripletLoss(), backend="eager", fullgraph=True)
    torch.testing.assert_close(tri(feats, labels), TripletLoss()(feats, labels))
    cp = torch.compile(CPCL(), backend="eager", fullgraph=True)
    torch.testing.assert_close(cp(feats, labels, vis, ir), CPCL()(feats, labels, vis, ir))


# --------------------------------------------------------------------------- X-ReID loss


def make_output(b=8, t=3, c=4, d=6, *, frames=True, cmcl=True, seed=0, requires_grad=True):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g).requires_grad_(requires_grad)

    return XReIDOutput(
        sequence=r(b, d),
        projected=r(b, d),
        memory_feature=r(b, d),
        triplet_features=(r(b, d), r(b, d)),
        logits=(r(b, c), r(b, c)),
        frame_logits=(r(b * t, c), r(b * t, c)) if frames else (),
        cmcl_pairs=((r(b // 2, d), r(b // 2, d)), (r(b // 2, d), r(b // 2, d)))
        if cmcl else (),
    )


# float32 XReIDLoss against the manual terms (b 8, t 3, c 4, d 6): cosines over d, softmax over
# c, means over b * t frames, 3 branches, logits up to 1 / tau = 20; backward doubles the chain
_XREID_TOL = rounding_tol(torch.float32, 2 * (3 * 6 + 4 + 8 * 3 + 3 + 4), scale=20)


def make_mem(c=4, d=6):
    mem = CrossModalPrototypeMemory(c, d)
    mem.initialize(torch.randn(4 * c, d), torch.arange(4 * c) % c,
                   (torch.arange(4 * c) // c) % 2)
    return mem


def manual_terms(out, labels, mem, t, smoothing=0.0):
    ce = torch.nn.CrossEntropyLoss(label_smoothing=smoothing)
    return {
        "cpcl": ref_cpcl(out.memory_feature, labels, mem.visible, mem.infrared, 0.05).float(),
        "triplet": sum(ref_triplet(f, labels, 0.3) for f in out.triplet_features).float(),
        "id": sum(ce(lg, labels) for lg in out.logits),
        "frame_id": sum(ce(lg, labels.repeat_interleave(t)) for lg in out.frame_logits),
        "cmcl": sum(((a - b) ** 2).sum(1).mean() for a, b in out.cmcl_pairs),
    }


def test_xreid_loss_paper_preset_matches_manual():
    labels = pk_labels(2, 4)
    out, mem = make_output(), make_mem()
    res = XReIDLoss.paper()(out, labels, mem)
    assert isinstance(res, LossOutput)
    manual = manual_terms(out, labels, mem, 3)
    assert set(res.terms) == {"cpcl", "triplet", "id", "frame_id", "cmcl"}
    for k, v in manual.items():
        torch.testing.assert_close(res.terms[k], v.detach(), **_XREID_TOL)
        assert not res.terms[k].requires_grad
    assert res.weights == {"cpcl": 1.0, "triplet": 1.0, "id": 1.0, "frame_id": 0.0,
                           "cmcl": 1.0}
    expected = manual["cpcl"] + manual["triplet"] + manual["id"] + manual["cmcl"]  # Eq. 10
    torch.testing.assert_close(res.total, expected, **_XREID_TOL)
    # gradients of the total equal those of the manual Eq. 10
    leaves = [out.memory_feature, *out.triplet_features, *out.logits, *out.frame_logits,
              out.cmcl_pairs[0][0]]
    grads = torch.autograd.grad(res.total, leaves, allow_unused=True)
    grads_ref = torch.autograd.grad(expected, leaves, allow_unused=True)
    for a, b in zip(grads, grads_ref):
        if b is None:
            assert a is None  # frame logits: weight 0, no gradient
        else:
            torch.testing.assert_close(a, b, **_XREID_TOL)
    floats = res.to_floats()
    assert set(floats) == {"total", *res.terms} and isinstance(floats["total"], float)
    torch.testing.assert_close(sum(res.weighted.values()), res.total.detach())


def test_xreid_loss_official_preset_matches_manual():
    labels = pk_labels(2, 4)
    t = 5
    out, mem = make_output(t=t), make_mem()
    loss_fn = XReIDLoss.official(num_frames=t)
    res = loss_fn(out, labels, mem)
    manual = manual_terms(out, labels, mem, t)
    # docs/differences.md, losses: 0.25 ID + Tri + CPCL + frame CE / T, no CMCL
    expected = 0.25 * manual["id"] + manual["triplet"] + manual["cpcl"] + manual[
        "frame_id"] / t
    torch.testing.assert_close(res.total, expected, **_XREID_TOL)
    assert res.weights["cmcl"] == 0.0 and res.weights["frame_id"] == pytest.approx(1 / t)
    torch.testing.assert_close(res.terms["cmcl"], manual["cmcl"].detach())  # logged only
    assert "id=0.25" in repr(loss_fn)


def test_xreid_loss_label_smoothing_and_optional_terms():
    labels = pk_labels(2, 4)
    out = make_output(frames=False, cmcl=False)
    res = XReIDLoss(cpcl=0.0, triplet=2.0, id=0.5, label_smoothing=0.1)(out, labels)
    assert set(res.terms) == {"triplet", "id"}
    manual = manual_terms(out, labels, make_mem(), 3, smoothing=0.1)
    torch.testing.assert_close(res.total, 2 * manual["triplet"] + 0.5 * manual["id"],
                               **_XREID_TOL)
    none = XReIDLoss(cpcl=0, triplet=0, id=0, cmcl=0)(
        make_output(frames=False, cmcl=False, requires_grad=False), labels)
    assert none.total.item() == 0.0


def test_xreid_loss_memory_used_before_update():
    labels = pk_labels(2, 4)
    out, mem = make_output(), make_mem()
    res = XReIDLoss.paper()(out, labels, mem)
    g1 = torch.autograd.grad(res.total, out.memory_feature, retain_graph=True)[0]
    mem.update(out.memory_feature.detach(), labels, torch.arange(8) % 2)
    g2 = torch.autograd.grad(res.total, out.memory_feature)[0]
    assert torch.equal(g1, g2)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda o: setattr(o, "memory_feature", torch.randn(7, 6)),
         "output.memory_feature: expected 8 rows"),
        (lambda o: setattr(o, "logits", (torch.randn(8, 4), torch.randn(6, 4))),
         r"output.logits\[1\]: expected 8 rows"),
        (lambda o: setattr(o, "triplet_features", (torch.randn(9, 6),)),
         r"output.triplet_features\[0\]"),
        (lambda o: setattr(o, "frame_logits", (torch.randn(20, 4),)),
         r"output.frame_logits\[0\]: expected B\*T rows"),
        (lambda o: setattr(o, "cmcl_pairs", (torch.randn(4, 6),)),
         r"output.cmcl_pairs\[0\]"),
    ],
)
def test_xreid_loss_bad_outputs(mutate, match):
    out = make_output()
    mutate(out)
    with pytest.raises(ValueError, match=match):
        XReIDLoss(frame_id=1.0)(out, pk_labels(2, 4), make_mem())


def test_xreid_loss_argument_errors():
    out = make_output()
    # no memory (a model built with use_memory=False): the CPCL term is simply absent
    no_memory = XReIDLoss()(out, pk_labels(2, 4), None)
    assert "cpcl" not in no_memory.terms and {"triplet", "id"} <= set(no_memory.terms)
    torch.testing.assert_close(
        no_memory.total, sum(no_memory.weighted.values(), torch.zeros(()))
    )
    with pytest.raises(ValueError, match="labels: expected an integer"):
        XReIDLoss()(out, pk_labels(2, 4).float(), make_mem())
    with pytest.raises(ValueError, match="triplet: expected a weight"):
        XReIDLoss(triplet=-1.0)
    with pytest.raises(ValueError, match="label_smoothing"):
        XReIDLoss(label_smoothing=1.0)
    with pytest.raises(ValueError, match="num_frames"):
        XReIDLoss.official(num_frames=0)
    assert math.isclose(XReIDLoss.official().weights["frame_id"], 0.1)


def test_xreid_loss_compiles_eager():
    labels = pk_labels(2, 4)
    out, mem = make_output(), make_mem()
    mem.validate = False
    loss_fn = XReIDLoss.paper()
    compiled = torch.compile(loss_fn, backend="eager")
    torch.testing.assert_close(compiled(out, labels, mem).total, loss_fn(out, labels, mem).total)


def test_loss_presets_one_registry():
    from xreid.losses import LOSS_PRESETS

    official = XReIDLoss.official(num_frames=8)
    assert official.weights == {"cpcl": 1.0, "triplet": 1.0, "id": 0.25, "frame_id": 1 / 8,
                                "cmcl": 0.0}
    assert XReIDLoss.from_preset("official", num_frames=8).weights == official.weights
    assert XReIDLoss.paper().weights == {"cpcl": 1.0, "triplet": 1.0, "id": 1.0,
                                         "frame_id": 0.0, "cmcl": 1.0}
    assert set(LOSS_PRESETS) == {"paper", "official"}
    tuned = XReIDLoss.from_preset("paper", id=0.5, label_smoothing=0.1)
    assert tuned.weights["id"] == 0.5 and tuned.label_smoothing == 0.1
    # smoothing and weights given to the preset are checked at construction
    with pytest.raises(ValueError, match="label_smoothing: expected a float in"):
        XReIDLoss.from_preset("official", label_smoothing=1.5)
    with pytest.raises(ValueError, match="id: expected a weight >= 0"):
        XReIDLoss.from_preset("paper", id=-1.0)
    with pytest.raises(ValueError, match="preset: expected one of"):
        XReIDLoss.from_preset("nope")
    with pytest.raises(ValueError, match="num_frames: expected an int >= 1, got 0"):
        XReIDLoss.official(num_frames=0)
