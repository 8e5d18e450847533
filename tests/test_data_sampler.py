"""CrossModalIdentitySampler: the batch-order contract, determinism, epochs, DDP."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from xreid import INFRARED, VISIBLE
from xreid.data import CrossModalIdentitySampler, Tracklet


def make_tracklets(counts: list[tuple[int, int]], num_test: int = 2) -> list[Tracklet]:
    """Identity y (pid 100+y) gets counts[y] = (visible, infrared) tracklets; plus test ones."""
    out = []
    for y, (nv, ni) in enumerate(counts):
        for k in range(nv):
            out.append(Tracklet((f"v{y}_{k}.jpg",), 100 + y, k % 3, VISIBLE, y))
        for k in range(ni):
            out.append(Tracklet((f"i{y}_{k}.jpg",), 100 + y, k % 3, INFRARED, y))
    for k in range(num_test):
        out.append(Tracklet((f"t{k}.jpg",), 999, 0, k % 2, -1))
    # interleave so indices are not grouped by identity
    return out[::2] + out[1::2]


counts_st = st.lists(st.tuples(st.integers(1, 5), st.integers(1, 5)), min_size=1, max_size=10)


def check_batch(batch: list[int], ts: list[Tracklet], P: int, K: int) -> list[int]:
    """Assert the contract for one batch; return its identity order."""
    assert len(batch) == 2 * P * K
    vis, ir = batch[:P * K], batch[P * K:]
    assert all(ts[i].modality == VISIBLE for i in vis)
    assert all(ts[i].modality == INFRARED for i in ir)
    assert all(ts[i].label >= 0 for i in batch)
    labels_v = [ts[i].label for i in vis]
    labels_i = [ts[i].label for i in ir]
    assert labels_v == labels_i  # position i shares the identity across the two halves
    order = labels_v[::K]
    assert len(set(order)) == P  # P distinct identities
    assert labels_v == [y for y in order for _ in range(K)]  # identity-major
    for y in order:
        for mod_half in (vis, ir):
            picks = [i for i in mod_half if ts[i].label == y]
            available = sum(1 for t in ts if t.label == y and t.modality == ts[picks[0]].modality)
            assert len(picks) == K
            if available >= K:
                assert len(set(picks)) == K  # no repeats unless the identity is short of clips
            else:
                assert len(set(picks)) == available
    return order


@given(counts_st, st.integers(1, 4), st.integers(1, 3), st.integers(0, 1000), st.booleans())
def test_batch_contract(counts, P, K, seed, drop_last) -> None:
    assume(len(counts) >= P)
    ts = make_tracklets(counts)
    s = CrossModalIdentitySampler(ts, ids_per_batch=P, clips_per_modality=K, seed=seed,
                                  drop_last=drop_last)
    batches = list(s)
    assert len(batches) == len(s) >= 1
    units = sum(max(1, min(v, i) // K) for v, i in counts)
    assert len(s) == max(1, units // P if drop_last else -(-units // P))
    for b in batches:
        check_batch(b, ts, P, K)
    assert s.batch_size == 2 * P * K


@given(counts_st, st.integers(1, 3), st.integers(1, 2), st.integers(0, 1000))
def test_deterministic_per_seed_and_epoch(counts, P, K, seed) -> None:
    assume(len(counts) >= P)
    ts = make_tracklets(counts)
    a = CrossModalIdentitySampler(ts, ids_per_batch=P, clips_per_modality=K, seed=seed)
    b = CrossModalIdentitySampler(ts, ids_per_batch=P, clips_per_modality=K, seed=seed)
    assert list(a) == list(b) == list(a)  # re-iterating repeats the epoch
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b)


def test_set_epoch_redraws() -> None:
    ts = make_tracklets([(4, 3)] * 12)
    s = CrossModalIdentitySampler(ts, ids_per_batch=4, clips_per_modality=2, seed=1)
    epochs = []
    for e in range(3):
        s.set_epoch(e)
        epochs.append(list(s))
    assert epochs[0] != epochs[1] != epochs[2]
    assert len({len(x) for x in epochs}) == 1
    other = CrossModalIdentitySampler(ts, ids_per_batch=4, clips_per_modality=2, seed=2)
    assert list(other) != epochs[0]


def test_epoch_covers_the_smaller_modality() -> None:
    # identities with >= K tracklets: each visible tracklet is drawn about once per epoch
    ts = make_tracklets([(4, 6)] * 8, num_test=0)
    s = CrossModalIdentitySampler(ts, ids_per_batch=4, clips_per_modality=2, seed=0)
    assert len(s) == 8 * 2 // 4
    seen = [i for b in s for i in b[:8]]
    assert sorted(seen) == sorted(i for i, t in enumerate(ts) if t.modality == VISIBLE)


@given(counts_st, st.integers(1, 3), st.integers(1, 2), st.integers(2, 4), st.integers(0, 99),
       st.integers(0, 5))
def test_ddp_disjoint_identities_equal_lengths(counts, P, K, R, seed, epoch) -> None:
    assume(len(counts) >= P * R)
    ts = make_tracklets(counts)
    samplers = [CrossModalIdentitySampler(ts, ids_per_batch=P, clips_per_modality=K, seed=seed,
                                          num_replicas=R, rank=r) for r in range(R)]
    per_rank = []
    for s in samplers:
        s.set_epoch(epoch)
        batches = list(s)
        assert len(batches) == len(s) == len(samplers[0])
        ids = {ts[i].label for b in batches for i in b}
        for b in batches:
            check_batch(b, ts, P, K)
        assert ids <= set(s.rank_identities())
        per_rank.append(set(s.rank_identities()))
    for a in range(R):
        for b in range(a + 1, R):
            assert per_rank[a].isdisjoint(per_rank[b])
    assert set().union(*per_rank) == set(range(len(counts)))


def test_batches_per_epoch_override() -> None:
    ts = make_tracklets([(2, 2)] * 5)
    s = CrossModalIdentitySampler(ts, ids_per_batch=2, clips_per_modality=1,
                                  batches_per_epoch=37)
    assert len(s) == 37 == len(list(s))


def test_errors_name_the_problem() -> None:
    ts = make_tracklets([(2, 2), (3, 0), (2, 1)])
    with pytest.raises(ValueError, match=r"identity label 1 \(pid 101\) has no infrared"):
        CrossModalIdentitySampler(ts, ids_per_batch=2)
    only_test = [Tracklet(("a.jpg",), 1, 0, VISIBLE, -1)]
    with pytest.raises(ValueError, match="no training tracklets"):
        CrossModalIdentitySampler(only_test)
    ok = make_tracklets([(2, 2)] * 3)
    with pytest.raises(ValueError, match="at least 4 training identities, got 3"):
        CrossModalIdentitySampler(ok, ids_per_batch=2, num_replicas=2)
    for kwargs, match in (({"ids_per_batch": 0}, "ids_per_batch"),
                          ({"clips_per_modality": 0}, "clips_per_modality"),
                          ({"num_replicas": 2, "rank": 2}, "rank"),
                          ({"batches_per_epoch": 0}, "batches_per_epoch")):
        with pytest.raises(ValueError, match=match):
            CrossModalIdentitySampler(ok, **{"ids_per_batch": 1, **kwargs})


def test_works_as_a_dataloader_batch_sampler() -> None:
    import torch

    ts = make_tracklets([(3, 3)] * 6)

    class Labels(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(ts)

        def __getitem__(self, i: int) -> dict:
            return {"label": ts[i].label, "modality": ts[i].modality}

    s = CrossModalIdentitySampler(ts, ids_per_batch=3, clips_per_modality=2)
    loader = torch.utils.data.DataLoader(Labels(), batch_sampler=s)
    assert len(loader) == len(s)
    for batch in loader:
        lab, mod = batch["label"], batch["modality"]
        assert torch.equal(lab[:6], lab[6:])
        assert mod[:6].eq(VISIBLE).all() and mod[6:].eq(INFRARED).all()
