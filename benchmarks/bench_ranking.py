"""Benchmark: ``evaluate_ranking`` against the standard per-query numpy loop.

Target (issue 6): >= 10x faster on CPU at HITSZ-VCM size (4,584 queries x 5,099 gallery,
427 identities, 12 cameras) with identical results (max abs diff <= 1e-9 on CMC, mAP, mINP).

The reference is the Market-1501 ``eval_func`` of torchreid / X-ReID (``utils/metrics.py``)
plus fast-reid's mINP, with two changes needed for an exact comparison: a stable argsort
(ties by gallery index) and float64 CMC averaging.

    python benchmarks/bench_ranking.py            # HITSZ-VCM size (the loop takes ~30 s a run)
    python benchmarks/bench_ranking.py --quick    # 1,000 x 1,200, a few seconds
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import compare, print_table, set_threads

from xreid.metrics import compute_distance, evaluate_ranking


def market1501_loop(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20,
                    remove_same_camera=True):
    """The standard per-query evaluation loop (torchreid ``eval_market1501`` style)."""
    num_q, num_g = distmat.shape
    indices = np.argsort(distmat, axis=1, kind="stable")
    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)
    all_cmc, all_AP, all_INP = [], [], []
    num_valid_q = 0.0
    for q_idx in range(num_q):
        q_pid, q_camid = q_pids[q_idx], q_camids[q_idx]
        order = indices[q_idx]
        if remove_same_camera:
            keep = np.invert((g_pids[order] == q_pid) & (g_camids[order] == q_camid))
        else:
            keep = np.ones(num_g, dtype=bool)
        raw_cmc = matches[q_idx][keep]
        if not np.any(raw_cmc):
            continue
        cmc = raw_cmc.cumsum()
        max_pos_idx = np.max(np.where(raw_cmc == 1))
        all_INP.append(cmc[max_pos_idx] / (max_pos_idx + 1.0))
        cmc[cmc > 1] = 1
        cmc = cmc[:max_rank]
        if len(cmc) < max_rank:  # pad past the gallery size with the last value
            cmc = np.concatenate([cmc, np.full(max_rank - len(cmc), cmc[-1])])
        all_cmc.append(cmc)
        num_valid_q += 1.0
        num_rel = raw_cmc.sum()
        tmp_cmc = raw_cmc.cumsum()
        tmp_cmc = [x / (i + 1.0) for i, x in enumerate(tmp_cmc)]
        tmp_cmc = np.asarray(tmp_cmc) * raw_cmc
        all_AP.append(tmp_cmc.sum() / num_rel)
    all_cmc = np.asarray(all_cmc).astype(np.float64).sum(0) / num_valid_q
    return all_cmc, float(np.mean(all_AP)), float(np.mean(all_INP)), int(num_valid_q)


def make_problem(num_q: int, num_g: int, num_ids: int, num_cams: int, dim: int, seed: int):
    """Identity-structured random features (a centre per identity + noise); at HITSZ-VCM size
    this gives mAP ~0.6 and Rank-1 ~0.9, the range of published models."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_ids, dim, generator=g)
    q_pids = torch.randint(0, num_ids, (num_q,), generator=g)
    g_pids = torch.cat([torch.arange(num_ids),
                        torch.randint(0, num_ids, (num_g - num_ids,), generator=g)])
    q_cams = torch.randint(0, num_cams, (num_q,), generator=g)
    g_cams = torch.randint(0, num_cams, (num_g,), generator=g)
    qf = centres[q_pids] + 2.0 * torch.randn(num_q, dim, generator=g)
    gf = centres[g_pids] + 2.0 * torch.randn(num_g, dim, generator=g)
    dist = compute_distance(qf, gf, "euclidean", normalize=True)
    return dist, q_pids, g_pids, q_cams, g_cams


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 x 1,200 instead")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    set_threads(args.threads)
    sizes = (1000, 1200) if args.quick else (4584, 5099)
    dist, qp, gp, qc, gc = make_problem(*sizes, num_ids=427, num_cams=12, dim=256, seed=0)
    dist_np, arrays = dist.numpy(), [t.numpy() for t in (qp, gp, qc, gc)]
    dist_dev = dist.to(args.device)

    rows = []
    worst = 0.0
    for remove in (True, False):
        ours = evaluate_ranking(dist_dev, qp, gp, qc, gc, remove_same_camera=remove)
        ref = market1501_loop(dist_np, *arrays, remove_same_camera=remove)
        diff = max(float(np.abs(ours.cmc - ref[0]).max()), abs(ours.mAP - ref[1]),
                   abs(ours.mINP - ref[2]))
        worst = max(worst, diff)
        assert ours.num_valid_queries == ref[3]
        print(f"remove_same_camera={remove}: mAP {ours.mAP:.6f}  R1 {ours.cmc[0]:.6f}  "
              f"mINP {ours.mINP:.6f}  valid {ours.num_valid_queries}/{sizes[0]}  "
              f"max|diff| vs loop {diff:.2e}")
        if remove or args.quick:
            c, r, ratio = compare(
                lambda remove=remove: evaluate_ranking(dist_dev, qp, gp, qc, gc,
                                                       remove_same_camera=remove),
                lambda remove=remove: market1501_loop(dist_np, *arrays,
                                                      remove_same_camera=remove),
                rounds=args.rounds, warmup=1, device=args.device,
            )
            rows.append((f"{sizes[0]}x{sizes[1]} remove_same_camera={remove}", c, r, ratio,
                         "<= 0.1 (>= 10x)"))
    print_table(rows, f"evaluate_ranking vs per-query numpy loop ({args.device}, "
                      f"{args.threads} threads)")
    print(f"\nmax abs difference on cmc/mAP/mINP: {worst:.2e} (target <= 1e-9)")
    assert worst <= 1e-9


if __name__ == "__main__":
    main()
