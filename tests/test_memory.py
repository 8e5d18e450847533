"""CrossModalPrototypeMemory (Eqs. 1-4) and build_memory, against slow references."""

from __future__ import annotations

import collections
import io
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from tolerance import rounding_tol
from torch import nn

from xreid import INFRARED, VISIBLE, CPCMemory, CrossModalPrototypeMemory, build_memory
from xreid.memory import ignore_memory_buffers_in_ddp
from xreid.memory.build import extract_memory_features
from xreid.memory.prototype_memory import _momentum_write, _select_hard

# --------------------------------------------------------------------------- references


def _update_tol(d: int) -> dict[str, float]:
    """One Eq. 1 step in float32: normalise (d squares, a root, a division), mix, normalise."""
    return rounding_tol(torch.float32, 2 * (d + 2) + 2)


def ref_initialize(features, labels, modality, num_classes):
    """Memory initialisation, one identity at a time (paper; authors' cluster means)."""
    vis = torch.zeros(num_classes, features.shape[1])
    ir = torch.zeros(num_classes, features.shape[1])
    for c in range(num_classes):
        for table, mod in ((vis, VISIBLE), (ir, INFRARED)):
            sel = (labels == c) & (modality == mod)
            if sel.any():
                mean = features[sel].double().mean(0)
                table[c] = (mean / mean.norm()).float()
    for c in range(num_classes):
        if not vis[c].any():
            vis[c] = ir[c]
        if not ir[c].any():
            ir[c] = vis[c]
    return vis, ir


def ref_update_eq12(vis, ir, feats, labels, modality, mu):
    """Eqs. 1-2 literally: per identity, the least similar sample of the OTHER modality."""
    vis, ir = vis.clone(), ir.clone()
    x = F.normalize(feats.float(), dim=1)
    new_vis, new_ir = vis.clone(), ir.clone()
    for y in sorted(set(labels.tolist())):
        for table, new_table, other in ((vis, new_vis, INFRARED), (ir, new_ir, VISIBLE)):
            cand = [i for i in range(len(labels)) if labels[i] == y and modality[i] == other]
            if not cand:
                continue
            sims = [float(x[i] @ table[y]) for i in cand]
            b = cand[int(np.argmin(sims))]  # first index on ties
            row = mu * table[y] + (1 - mu) * x[b]
            new_table[y] = row / row.norm()
    return new_vis, new_ir


def cm_hard_update(memory, inputs, targets, momentum):
    """The authors' CM_Hard.backward update (model/cm.py), verbatim apart from .cuda()."""
    batch_centers = collections.defaultdict(list)
    for instance_feature, index in zip(inputs, targets.tolist()):
        batch_centers[index].append(instance_feature)
    for index, features in batch_centers.items():
        distances = []
        for feature in features:
            distance = feature.unsqueeze(0).mm(memory[index].unsqueeze(0).t())[0][0]
            distances.append(distance.cpu().numpy())
        median = np.argmin(np.array(distances))
        memory[index] = memory[index] * momentum + (1 - momentum) * features[median]
        memory[index] /= memory[index].norm()


def ref_cpcl(feats, labels, vis, ir, tau):
    """Eqs. 3-4 with the authors' temperature, one sample at a time."""
    total = 0.0
    for i in range(len(labels)):
        f = feats[i] / feats[i].norm()
        for table in (vis, ir):
            p = table / table.norm(dim=1, keepdim=True)
            logits = (p @ f) / tau
            total = total - torch.log_softmax(logits, 0)[labels[i]] / len(labels)
    return total


def make_memory(c=6, d=8, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    mem = CrossModalPrototypeMemory(c, d, **kw)
    n = 4 * c
    mem.initialize(torch.randn(n, d, generator=g), torch.arange(n) % c,
                   (torch.arange(n) // c) % 2)
    return mem


def random_batch(c, d, b, seed, *, duplicates=True):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(b, d, generator=g)
    labels = torch.randint(0, c, (b,), generator=g)
    modality = torch.randint(0, 2, (b,), generator=g)
    if duplicates and b >= 4:
        feats[1] = feats[0]  # exact duplicate sample
        labels[1], modality[1] = labels[0], modality[0]
    return feats, labels, modality


# --------------------------------------------------------------------------- construction


def test_alias_and_buffers():
    assert CPCMemory is CrossModalPrototypeMemory
    mem = CPCMemory(5, 3)
    assert mem.visible.shape == mem.infrared.shape == (5, 3)
    assert mem.visible.dtype == torch.float32
    assert set(mem.state_dict()) == {"visible", "infrared"}
    assert "hard_selection='cross_modal'" in repr(mem)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"num_identities": 0, "dim": 3}, "num_identities"),
        ({"num_identities": 3, "dim": 0}, "dim"),
        ({"num_identities": 3, "dim": 3, "momentum": 1.0}, "momentum"),
        ({"num_identities": 3, "dim": 3, "momentum": -0.1}, "momentum"),
        ({"num_identities": 3, "dim": 3, "temperature": 0.0}, "temperature"),
        ({"num_identities": 3, "dim": 3, "hard_selection": "nearest"}, "hard_selection"),
        ({"num_identities": 3, "dim": 3, "collaboration": 1}, "collaboration"),
    ],
)
def test_constructor_validation(kwargs, name):
    with pytest.raises(ValueError, match=name):
        CrossModalPrototypeMemory(**kwargs)


# --------------------------------------------------------------------------- initialize


def test_initialize_matches_reference_and_warns_for_single_modality():
    c, d = 5, 6
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(30, d, generator=g) * 3
    labels = torch.arange(30) % c
    modality = (torch.arange(30) // c) % 2
    modality[labels == 2] = VISIBLE  # identity 2: visible only
    modality[labels == 4] = INFRARED  # identity 4: infrared only
    mem = CrossModalPrototypeMemory(c, d)
    with pytest.warns(UserWarning, match="no infrared sample"):
        mem.initialize(feats, labels, modality)
    vis, ir = ref_initialize(feats, labels, modality, c)
    # a mean of up to 30 rows, a norm over d, a division (reference in float64)
    tol = rounding_tol(torch.float32, 30 + d + 2)
    torch.testing.assert_close(mem.visible, vis, **tol)
    torch.testing.assert_close(mem.infrared, ir, **tol)
    assert torch.equal(mem.infrared[2], mem.visible[2])
    assert torch.equal(mem.visible[4], mem.infrared[4])
    torch.testing.assert_close(mem.visible.norm(dim=1), torch.ones(c))
    assert mem.is_initialized


def test_initialize_missing_identity_raises_and_bf16_input():
    mem = CrossModalPrototypeMemory(4, 3)
    feats = torch.randn(6, 3)
    with pytest.raises(ValueError, match=r"labels: .*\[3\]"):
        mem.initialize(feats, torch.tensor([0, 1, 2, 0, 1, 2]), torch.tensor([0, 0, 0, 1, 1, 1]))
    with pytest.raises(ValueError, match="features"):
        mem.initialize(feats[:0], torch.zeros(0, dtype=torch.long),
                       torch.zeros(0, dtype=torch.long))
    labels, modality = torch.arange(8) % 4, torch.arange(8) // 4
    mem.initialize(torch.randn(8, 3).bfloat16(), labels, modality)  # accumulated in float32
    assert mem.visible.dtype == torch.float32


# --------------------------------------------------------------------------- update


@pytest.mark.parametrize("seed", range(6))
def test_update_matches_eq1_eq2_reference(seed):
    c, d = 7, 5
    mem = make_memory(c, d, seed=seed, momentum=0.2)
    # identities with one modality only, duplicates, absent identities
    for step in range(3):
        feats, labels, modality = random_batch(c, d, 12, seed * 10 + step)
        modality[labels == 3] = VISIBLE
        vis, ir = ref_update_eq12(mem.visible, mem.infrared, feats, labels, modality, 0.2)
        mem.update(feats, labels, modality)
        torch.testing.assert_close(mem.visible, vis, **_update_tol(d))
        torch.testing.assert_close(mem.infrared, ir, **_update_tol(d))


def test_update_cross_modal_semantics_bitwise():
    c, d = 6, 4
    mem = make_memory(c, d)
    vis0, ir0 = mem.visible.clone(), mem.infrared.clone()
    feats = torch.randn(4, d)
    labels = torch.tensor([1, 1, 2, 2])
    modality = torch.tensor([VISIBLE, VISIBLE, VISIBLE, INFRARED])
    mem.update(feats, labels, modality)
    untouched = [0, 3, 4, 5]
    assert torch.equal(mem.visible[untouched], vis0[untouched])
    assert torch.equal(mem.infrared[untouched], ir0[untouched])
    # identity 1 has visible samples only: infrared[1] moves, visible[1] does not
    assert torch.equal(mem.visible[1], vis0[1])
    assert not torch.equal(mem.infrared[1], ir0[1])
    # identity 2: visible[2] takes the only infrared sample, infrared[2] the only visible one
    x = F.normalize(feats, dim=1)
    exp_v = F.normalize(0.2 * vis0[2] + 0.8 * x[3], dim=0)
    exp_i = F.normalize(0.2 * ir0[2] + 0.8 * x[2], dim=0)
    torch.testing.assert_close(mem.visible[2], exp_v)
    torch.testing.assert_close(mem.infrared[2], exp_i)


def test_update_ties_pick_first_sample():
    mem = CrossModalPrototypeMemory(2, 3, momentum=0.5)
    e = torch.eye(3)
    mem.initialize(torch.stack([e[0], e[0], e[1], e[1]]), torch.tensor([0, 0, 1, 1]),
                   torch.tensor([0, 1, 0, 1]))
    # two infrared samples of identity 0, both orthogonal to visible[0] = e0: a tie
    feats = torch.stack([e[2], e[1]])
    mem.update(feats, torch.tensor([0, 0]), torch.tensor([INFRARED, INFRARED]))
    torch.testing.assert_close(mem.visible[0], F.normalize(0.5 * e[0] + 0.5 * e[2], dim=0))
    mem2 = CrossModalPrototypeMemory(2, 3, momentum=0.5)
    mem2.load_state_dict({"visible": torch.stack([e[0], e[1]]),
                          "infrared": torch.stack([e[0], e[1]])})
    mem2.update(feats.flip(0), torch.tensor([0, 0]), torch.tensor([INFRARED, INFRARED]))
    torch.testing.assert_close(mem2.visible[0], F.normalize(0.5 * e[0] + 0.5 * e[1], dim=0))


@pytest.mark.parametrize("seed", range(5))
def test_hard_selection_any_matches_authors_loop(seed):
    c, d = 6, 16
    mem = make_memory(c, d, seed=seed, momentum=0.1, hard_selection="any")
    vis, ir = mem.visible.clone(), mem.infrared.clone()
    for step in range(3):
        feats, labels, modality = random_batch(c, d, 16, 100 + seed * 10 + step)
        x = F.normalize(feats, dim=1)
        cm_hard_update(vis, x, labels, 0.1)  # both memories see the whole mixed batch
        cm_hard_update(ir, x, labels, 0.1)
        mem.update(feats, labels, modality)
        torch.testing.assert_close(mem.visible, vis, **_update_tol(d))
        torch.testing.assert_close(mem.infrared, ir, **_update_tol(d))


@pytest.mark.parametrize("hard_selection", ["cross_modal", "any"])
def test_exact_and_sync_free_writes_are_bitwise_equal(hard_selection):
    c, d = 9, 12
    for seed in range(4):
        mem = make_memory(c, d, seed=seed)
        feats, labels, modality = random_batch(c, d, 20, seed)
        x = feats.float()
        norms = torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(1e-12)
        cand = None
        if hard_selection == "cross_modal":
            cand = torch.cat([modality == INFRARED, modality == VISIBLE])
        first = _select_hard((mem.visible, mem.infrared), x, norms, labels, cand)
        a = (mem.visible.clone(), mem.infrared.clone())
        b = (mem.visible.clone(), mem.infrared.clone())
        _momentum_write(a, x, norms, labels, first, 0.2, exact_rows=True)
        _momentum_write(b, x, norms, labels, first, 0.2, exact_rows=False)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@given(
    c=st.integers(1, 6),
    d=st.integers(1, 9),
    b=st.integers(0, 14),
    seed=st.integers(0, 2**16),
    hard=st.sampled_from(["cross_modal", "any"]),
)
def test_update_invariants(c, d, b, seed, hard):
    g = torch.Generator().manual_seed(seed)
    mem = CrossModalPrototypeMemory(c, d, hard_selection=hard)
    labels0 = torch.arange(2 * c) % c
    mem.initialize(torch.randn(2 * c, d, generator=g), labels0, torch.arange(2 * c) // c)
    feats = torch.randn(b, d, generator=g)
    labels = torch.randint(0, c, (b,), generator=g)
    modality = torch.randint(0, 2, (b,), generator=g)
    inputs = (feats.clone(), labels.clone(), modality.clone())
    before = (mem.visible.clone(), mem.infrared.clone())
    mem.update(feats, labels, modality)
    # inputs untouched, float32, unit rows, absent identities bit-for-bit unchanged
    assert all(torch.equal(a, b_) for a, b_ in zip(inputs, (feats, labels, modality)))
    for table, old in zip((mem.visible, mem.infrared), before):
        assert table.dtype == torch.float32
        torch.testing.assert_close(table.norm(dim=1), torch.ones(c), **_update_tol(d + 1))
        absent = [k for k in range(c) if k not in set(labels.tolist())]
        assert torch.equal(table[absent], old[absent])
    # the update does not depend on the order of the batch (no exact ties here)
    perm = torch.randperm(b, generator=g)
    mem2 = CrossModalPrototypeMemory(c, d, hard_selection=hard)
    mem2.load_state_dict(dict(zip(("visible", "infrared"), before)))
    mem2.update(feats[perm], labels[perm], modality[perm])
    torch.testing.assert_close(mem2.visible, mem.visible, **_update_tol(d))
    torch.testing.assert_close(mem2.infrared, mem.infrared, **_update_tol(d))


def test_empty_batch_is_a_noop():
    mem = make_memory()
    state = {k: v.clone() for k, v in mem.state_dict().items()}
    mem.update(torch.zeros(0, 8), torch.zeros(0, dtype=torch.long),
               torch.zeros(0, dtype=torch.long))
    assert all(torch.equal(state[k], v) for k, v in mem.state_dict().items())
    loss = mem(torch.zeros(0, 8, requires_grad=True), torch.zeros(0, dtype=torch.long))
    assert loss.item() == 0.0


@pytest.mark.parametrize(
    ("feats", "labels", "modality", "match"),
    [
        (torch.randn(3, 8), torch.tensor([0, 6, 1]), torch.tensor([0, 1, 0]),
         r"labels: expected values in \[0, 6\), got values in \[0, 6\]"),
        (torch.randn(3, 8), torch.tensor([0, -1, 1]), torch.tensor([0, 1, 0]), "labels"),
        (torch.randn(3, 8), torch.tensor([0, 1, 1]), torch.tensor([0, 2, 0]),
         r"modality: expected values in \{0 \(visible\), 1 \(infrared\)\}, got \[2\]"),
        (torch.randn(3, 7), torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]),
         r"features: expected feature dim 8"),
        (torch.tensor([[float("nan")] * 8] * 3), torch.tensor([0, 1, 1]),
         torch.tensor([0, 1, 0]), r"features: expected finite values.*rows \[0, 1, 2\]"),
        (torch.randn(3, 8).index_fill(0, torch.tensor([1]), float("inf")),
         torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]), r"features: .*rows \[1\]"),
        (torch.randn(3, 8), torch.tensor([0.0, 1.0, 1.0]), torch.tensor([0, 1, 0]),
         "labels: expected an integer tensor"),
        (torch.randn(3, 8), torch.tensor([0, 1]), torch.tensor([0, 1, 0]),
         "labels: expected 3 entries"),
        (torch.randn(3, 8), torch.tensor([0, 1, 1]), torch.tensor([0, 1]),
         "modality: expected 3 entries"),
        (torch.randn(8), torch.tensor([0]), torch.tensor([0]), "features: expected a 2-D"),
        (torch.randn(3, 8).long(), torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]),
         "features: expected a floating-point"),
    ],
)
def test_update_bad_inputs_raise_and_leave_memory_intact(feats, labels, modality, match):
    mem = make_memory()
    state = {k: v.clone() for k, v in mem.state_dict().items()}
    with pytest.raises(ValueError, match=match):
        mem.update(feats, labels, modality)
    assert all(torch.equal(state[k], v) for k, v in mem.state_dict().items())


def test_validate_false_ignores_invalid_samples():
    c, d = 6, 8
    feats, labels, modality = random_batch(c, d, 12, 3)
    bad_feats, bad_labels, bad_mod = feats.clone(), labels.clone(), modality.clone()
    bad_labels[0] = 99
    bad_mod[1] = 5
    bad_feats[2, 3] = float("nan")
    keep = torch.arange(12) >= 3
    ref = make_memory(c, d)
    ref.update(feats[keep], labels[keep], modality[keep])
    for exact in (True, False):  # CPU default path and the accelerator (sync-free) path
        mem = make_memory(c, d, validate=False)
        if not exact:
            mem.force_sync_free = True
        mem.update(bad_feats, bad_labels, bad_mod)
        assert torch.equal(mem.visible, ref.visible)
        assert torch.equal(mem.infrared, ref.infrared)


# --------------------------------------------------------------------------- forward / CPCL


def test_forward_matches_eqs_3_4_reference():
    mem = make_memory(6, 8, temperature=0.07)
    feats = torch.randn(10, 8, requires_grad=True)
    labels = torch.randint(0, 6, (10,))
    loss = mem(feats, labels)
    ref = ref_cpcl(feats, labels, mem.visible, mem.infrared, 0.07)
    torch.testing.assert_close(loss, ref)
    (g,) = torch.autograd.grad(loss, feats)
    (g_ref,) = torch.autograd.grad(ref, feats)
    torch.testing.assert_close(g, g_ref)
    assert mem.visible.grad is None and not mem.visible.requires_grad


def test_forward_validates_labels():
    mem = make_memory()
    with pytest.raises(ValueError, match="labels: expected values in"):
        mem(torch.randn(2, 8), torch.tensor([0, 6]))
    with pytest.raises(ValueError, match="features"):
        mem(torch.randn(2, 5), torch.tensor([0, 1]))


def test_forward_before_initialize_warns():
    mem = CrossModalPrototypeMemory(3, 4)
    with pytest.warns(UserWarning, match="before initialize"):
        mem(torch.randn(2, 4), torch.tensor([0, 1]))


@pytest.mark.parametrize("order", ["update_then_backward", "backward_then_update"])
def test_update_before_or_after_backward_same_gradient(order):
    c, d = 6, 8
    w = torch.randn(d, d)
    inp = torch.randn(12, d)
    labels = torch.arange(12) % c
    modality = (torch.arange(12) // c) % 2

    def step(order):
        mem = make_memory(c, d)
        weight = w.clone().requires_grad_(True)
        feats = inp @ weight
        loss = mem(feats, labels)
        if order == "update_then_backward":
            mem.update(feats, labels, modality)
            loss.backward()
        else:
            loss.backward()
            mem.update(feats, labels, modality)
        return weight.grad, mem

    g_ref, mem_ref = step("backward_then_update")
    g, mem = step(order)
    assert torch.equal(g, g_ref)
    assert torch.equal(mem.visible, mem_ref.visible)
    # the gradient is the one of the pre-update prototypes
    pre = make_memory(c, d)
    weight = w.clone().requires_grad_(True)
    ref_cpcl(inp @ weight, labels, pre.visible, pre.infrared, 0.05).backward()
    torch.testing.assert_close(g, weight.grad)


# --------------------------------------------------------------------------- state / dtypes


def test_state_dict_roundtrip():
    mem = make_memory(5, 4, momentum=0.1)
    mem.update(*random_batch(5, 4, 8, 0))
    buf = io.BytesIO()
    torch.save(mem.state_dict(), buf)
    buf.seek(0)
    other = CrossModalPrototypeMemory(5, 4, momentum=0.1)
    assert not other.is_initialized
    other.load_state_dict(torch.load(buf))
    assert other.is_initialized
    assert torch.equal(other.visible, mem.visible) and torch.equal(other.infrared, mem.infrared)
    batch = random_batch(5, 4, 8, 1)
    mem.update(*batch)
    other.update(*batch)
    assert torch.equal(other.visible, mem.visible)
    # nested in a model, under its prefix
    model = nn.Module()
    model.memory = other
    assert {"memory.visible", "memory.infrared"} == set(model.state_dict())


def test_prototypes_stay_float32():
    mem = make_memory()
    before = mem.visible.clone()
    mem.half()
    assert mem.visible.dtype == torch.float32 and torch.equal(mem.visible, before)
    mem.to(torch.bfloat16)
    assert mem.infrared.dtype == torch.float32
    model = nn.Sequential(nn.Linear(8, 8))
    model.memory = mem
    model.to(torch.float64)
    assert model[0].weight.dtype == torch.float64 and mem.visible.dtype == torch.float32


def test_autocast_bf16():
    c, d = 6, 8
    mem = make_memory(c, d)
    layer = nn.Linear(d, d)
    x = torch.randn(12, d)
    labels = torch.arange(12) % c
    modality = (torch.arange(12) // c) % 2
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feats = layer(x)
        assert feats.dtype == torch.bfloat16
        loss = mem(feats, labels)
        mem.update(feats, labels, modality)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()
    assert mem.visible.dtype == mem.infrared.dtype == torch.float32
    torch.testing.assert_close(mem.visible.norm(dim=1), torch.ones(c))
    # the same update from float32 copies of the bf16 features
    ref = make_memory(c, d)
    ref.update(feats.float(), labels, modality)
    assert torch.equal(ref.visible, mem.visible)


def test_compile_forward_eager_backend():
    mem = make_memory(validate=False)
    feats = torch.randn(6, 8, requires_grad=True)
    labels = torch.arange(6) % 6
    compiled = torch.compile(mem, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(feats, labels), mem(feats, labels))


# --------------------------------------------------------------------------- build_memory


class TinyVideoModel(nn.Module):
    """Averages frames, then a linear + BatchNorm head: a stand-in for XReID."""

    def __init__(self, dim: int = 6) -> None:
        super().__init__()
        self.proj = nn.Linear(3, dim)
        self.bn = nn.BatchNorm1d(dim)
        self.calls: list[tuple[bool, bool]] = []

    def memory_features(self, video: torch.Tensor) -> torch.Tensor:
        self.calls.append((self.training, torch.is_grad_enabled()))
        return self.bn(self.proj(video.mean(dim=(1, 3, 4))))


def fake_loader(num_ids=4, per=3, batch=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = num_ids * per * 2
    labels = torch.arange(n) % num_ids
    modality = (torch.arange(n) // num_ids) % 2
    video = torch.randn(n, 2, 3, 4, 4, generator=g)
    return [
        {"video": video[i:i + batch], "label": labels[i:i + batch],
         "modality": modality[i:i + batch], "camera": torch.zeros_like(labels[i:i + batch])}
        for i in range(0, n, batch)
    ]


def test_build_memory_eval_no_grad_and_restores_modes():
    model = TinyVideoModel()
    model.train()
    model.proj.eval()  # a submodule deliberately in eval mode must stay so
    stats = model.bn.running_mean.clone()
    loader = fake_loader()
    mem = build_memory(model, loader, 4, momentum=0.1, hard_selection="any")
    assert isinstance(mem, CrossModalPrototypeMemory) and mem.dim == 6
    assert mem.momentum == 0.1 and mem.hard_selection == "any"
    assert all(c == (False, False) for c in model.calls)
    assert model.training and model.bn.training and not model.proj.training
    assert torch.equal(model.bn.running_mean, stats)  # eval: no BN statistics update
    feats, labels, modality = extract_memory_features(model, loader)
    vis, ir = ref_initialize(feats, labels, modality, 4)
    tol = rounding_tol(torch.float32, len(feats) + feats.shape[1] + 2)
    torch.testing.assert_close(mem.visible, vis, **tol)
    torch.testing.assert_close(mem.infrared, ir, **tol)


def test_build_memory_rebuild_custom_fn_and_autocast():
    model = TinyVideoModel()
    loader = fake_loader()
    mem = build_memory(model, loader, 4)
    with torch.no_grad():
        model.proj.weight.add_(1.0)  # "one epoch later"
    old = mem.visible.clone()
    same = build_memory(model, loader, memory=mem)
    assert same is mem and not torch.equal(mem.visible, old)

    def feature_fn(m, batch):
        assert batch["camera"].shape == batch["label"].shape
        return m.memory_features(batch["video"]) * 2.0

    doubled = build_memory(model, loader, 4, feature_fn=feature_fn)
    torch.testing.assert_close(doubled.visible, mem.visible)  # scale-invariant mean
    bf16 = build_memory(model, loader, 4, autocast_dtype=torch.bfloat16)
    assert bf16.visible.dtype == torch.float32
    # three bf16 roundings (input, weight, output of the linear layer), at most doubled by
    # normalising the rows; the mean and the norm run in float32
    torch.testing.assert_close(bf16.visible, mem.visible, **rounding_tol(torch.bfloat16, 6))


def test_build_memory_errors_restore_mode():
    model = TinyVideoModel().train()
    with pytest.raises(ValueError, match="num_identities"):
        build_memory(model, fake_loader())
    with pytest.raises(ValueError, match="memory_features"):
        build_memory(nn.Linear(2, 2), fake_loader(), 4)
    bad = [{"video": torch.randn(2, 2, 3, 4, 4), "label": torch.tensor([0, 1])}]
    with pytest.raises(ValueError, match="'modality'"):
        build_memory(model, bad, 2)
    assert model.training
    with pytest.raises(ValueError, match="num_identities: expected 4"):
        build_memory(model, fake_loader(), 3, memory=CrossModalPrototypeMemory(4, 6))


def test_ignore_memory_buffers_in_ddp_registers_names():
    model = nn.Module()
    model.head = nn.Linear(2, 2)
    model.memory = CrossModalPrototypeMemory(3, 2)
    model._ddp_params_and_buffers_to_ignore = ["head.bias"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        names = ignore_memory_buffers_in_ddp(model)
    assert names == ["memory.visible", "memory.infrared"]
    assert model._ddp_params_and_buffers_to_ignore == [
        "head.bias", "memory.visible", "memory.infrared"]
    assert ignore_memory_buffers_in_ddp(CrossModalPrototypeMemory(2, 2)) == [
        "visible", "infrared"]


# --------------------------------------------------------------------------- ablation options
# hard_selection="same_modality" (PCL's per-modality memories) and collaboration=False


def ref_update_same_modality(vis, ir, feats, labels, modality, mu):
    """Per identity, visible[y] takes the least similar VISIBLE sample of y, infrared[y] the
    least similar INFRARED one (two independent memories), one identity at a time."""
    x = F.normalize(feats.float(), dim=1)
    new_vis, new_ir = vis.clone(), ir.clone()
    for y in sorted(set(labels.tolist())):
        for table, new_table, own in ((vis, new_vis, VISIBLE), (ir, new_ir, INFRARED)):
            cand = [i for i in range(len(labels)) if labels[i] == y and modality[i] == own]
            if not cand:
                continue
            sims = [float(x[i] @ table[y]) for i in cand]
            b = cand[int(np.argmin(sims))]
            row = mu * table[y] + (1 - mu) * x[b]
            new_table[y] = row / row.norm()
    return new_vis, new_ir


def ref_own_modality_loss(feats, labels, modality, vis, ir, tau):
    """Each sample against its own modality's C prototypes; the CE is averaged within each
    modality and the two means are added, one sample at a time."""
    sums = {VISIBLE: 0.0, INFRARED: 0.0}
    counts = {VISIBLE: 0, INFRARED: 0}
    for i in range(len(labels)):
        m = int(modality[i])
        table = vis if m == VISIBLE else ir
        f = feats[i] / feats[i].norm()
        p = table / table.norm(dim=1, keepdim=True)
        sums[m] = sums[m] - torch.log_softmax((p @ f) / tau, 0)[labels[i]]
        counts[m] += 1
    return sum(sums[m] / counts[m] for m in sums if counts[m])


@pytest.mark.parametrize("seed", range(6))
def test_update_same_modality_matches_reference(seed):
    c, d = 7, 5
    mem = make_memory(c, d, seed=seed, momentum=0.2, hard_selection="same_modality")
    for step in range(3):
        feats, labels, modality = random_batch(c, d, 12, seed * 10 + step)
        modality[labels == 3] = VISIBLE  # identity 3: visible samples only
        vis, ir = ref_update_same_modality(mem.visible, mem.infrared, feats, labels,
                                           modality, 0.2)
        ir3 = mem.infrared[3].clone()
        mem.update(feats, labels, modality)
        torch.testing.assert_close(mem.visible, vis, **_update_tol(d))
        torch.testing.assert_close(mem.infrared, ir, **_update_tol(d))
        assert torch.equal(mem.infrared[3], ir3)  # no infrared sample of 3: unchanged


def test_same_modality_differs_from_cross_modal_on_a_known_batch():
    e = torch.eye(3)
    labels, modality = torch.tensor([0, 0]), torch.tensor([VISIBLE, INFRARED])
    feats = torch.stack([e[1], e[2]])  # the visible sample is e1, the infrared one e2
    rows = {}
    for rule in ("same_modality", "cross_modal"):
        mem = CrossModalPrototypeMemory(1, 3, momentum=0.5, hard_selection=rule)
        mem.load_state_dict({"visible": e[:1].clone(), "infrared": e[:1].clone()})
        mem.update(feats, labels, modality)
        rows[rule] = (mem.visible[0], mem.infrared[0])
    half = lambda v: F.normalize(0.5 * e[0] + 0.5 * v, dim=0)  # noqa: E731
    torch.testing.assert_close(rows["same_modality"][0], half(e[1]))
    torch.testing.assert_close(rows["same_modality"][1], half(e[2]))
    torch.testing.assert_close(rows["cross_modal"][0], half(e[2]))
    torch.testing.assert_close(rows["cross_modal"][1], half(e[1]))


def test_same_modality_sync_free_path_is_bitwise_equal():
    c, d = 9, 12
    for seed in range(3):
        exact = make_memory(c, d, seed=seed, hard_selection="same_modality")
        free = make_memory(c, d, seed=seed, hard_selection="same_modality")
        free.force_sync_free = True
        feats, labels, modality = random_batch(c, d, 20, seed)
        exact.update(feats, labels, modality)
        free.update(feats, labels, modality)
        assert torch.equal(exact.visible, free.visible)
        assert torch.equal(exact.infrared, free.infrared)


@pytest.mark.parametrize("seed", range(3))
def test_own_modality_loss_matches_reference(seed):
    mem = make_memory(6, 8, seed=seed, temperature=0.07, collaboration=False)
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(10, 8, generator=g, requires_grad=True)
    labels = torch.randint(0, 6, (10,), generator=g)
    modality = torch.tensor([VISIBLE] * 3 + [INFRARED] * 7)  # unbalanced on purpose
    loss = mem(feats, labels, modality)
    ref = ref_own_modality_loss(feats, labels, modality, mem.visible, mem.infrared, 0.07)
    torch.testing.assert_close(loss, ref)
    (g1,) = torch.autograd.grad(loss, feats)
    (g2,) = torch.autograd.grad(ref, feats)
    torch.testing.assert_close(g1, g2)
    # a batch of one modality: only that memory's term
    vis_only = torch.full((10,), VISIBLE)
    torch.testing.assert_close(
        mem(feats, labels, vis_only),
        ref_own_modality_loss(feats, labels, vis_only, mem.visible, mem.infrared, 0.07),
    )
    assert "collaboration=False" in repr(mem)


def test_own_modality_loss_ignores_the_other_memory():
    mem = make_memory(4, 6, collaboration=False)
    feats, labels = torch.randn(4, 6), torch.tensor([0, 1, 2, 3])
    visible = torch.full((4,), VISIBLE)
    before = mem(feats, labels, visible)
    mem.infrared.copy_(F.normalize(torch.randn(4, 6), dim=1))  # scramble the other memory
    assert torch.equal(mem(feats, labels, visible), before)


def test_collaboration_needs_modality_and_checks_it():
    own = make_memory(collaboration=False)
    with pytest.raises(ValueError, match=r"modality: expected a \(B,\) tensor.*got None"):
        own(torch.randn(2, 8), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="modality: expected values in"):
        own(torch.randn(2, 8), torch.tensor([0, 1]), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="modality"):
        own(torch.randn(2, 8), torch.tensor([0, 1]), torch.tensor([0, 1, 1]))
    both = make_memory()  # collaboration=True: modality is optional and does not matter
    feats, labels = torch.randn(4, 8), torch.tensor([0, 1, 2, 3])
    assert torch.equal(both(feats, labels, torch.tensor([0, 0, 1, 1])), both(feats, labels))


def test_build_memory_passes_the_ablation_options():
    mem = build_memory(TinyVideoModel(), fake_loader(), 4, hard_selection="same_modality",
                       collaboration=False)
    assert mem.hard_selection == "same_modality" and mem.collaboration is False
