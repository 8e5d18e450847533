"""Benchmark: vectorised CPC memory update vs the authors' per-sample loop.

The reference is the update hidden in ``CM_Hard.backward`` of the authors' ``model/cm.py``
(copied from cluster-contrast): group the batch by label in a Python dict, one ``mm`` and
one ``.cpu().numpy()`` per sample, ``np.argmin``, then one momentum write + renormalisation
per identity -- applied to both memories (visible and infrared) with the whole batch, i.e.
``hard_selection="any"``. The candidate is :meth:`xreid.CrossModalPrototypeMemory.update`
with the same semantics (results checked equal before timing).

Shape: B = 64 clips (16 identities x 2 modalities x 2 clips), C = 500, d = 1280 (the
authors' 1280-d memory feature, HITSZ-VCM's 500 training identities). Target: >= 5x on CPU.

Run: ``python benchmarks/bench_memory.py [--threads 1] [--device cpu]``.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import compare, print_table, set_threads

from xreid import CrossModalPrototypeMemory


def cm_hard_update(memory: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor,
                   momentum: float) -> None:
    """The authors' ``CM_Hard.backward`` memory update (inputs already L2-normalised)."""
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--identities", type=int, default=500)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--inner", type=int, default=20, help="updates per timed call")
    args = parser.parse_args()
    set_threads(args.threads)
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    c, d, b = args.identities, args.dim, args.batch
    p = max(1, b // 4)

    init = torch.randn(4 * c, d, generator=g)
    init_labels = torch.arange(4 * c) % c
    init_modality = (torch.arange(4 * c) // c) % 2
    feats = torch.randn(b, d, generator=g).to(device)
    ids = torch.randperm(c, generator=g)[:p]
    labels = ids.repeat_interleave(b // p).to(device)  # P identities x K clips
    modality = (torch.arange(b) % 2).to(device)  # K/2 visible + K/2 infrared per identity

    rows = []
    for validate in (True, False):
        mem = CrossModalPrototypeMemory(c, d, momentum=0.2, hard_selection="any",
                                        validate=validate).to(device)
        mem.initialize(init.to(device), init_labels.to(device), init_modality.to(device))
        vis, ir = mem.visible.clone(), mem.infrared.clone()

        def reference(vis: torch.Tensor = vis, ir: torch.Tensor = ir) -> None:
            for _ in range(args.inner):
                x = F.normalize(feats, dim=1)
                cm_hard_update(vis, x, labels, 0.2)
                cm_hard_update(ir, x, labels, 0.2)

        def candidate(mem: CrossModalPrototypeMemory = mem) -> None:
            for _ in range(args.inner):
                mem.update(feats, labels, modality)

        # same semantics: one update from the same state gives the same memories
        check = CrossModalPrototypeMemory(c, d, hard_selection="any").to(device)
        check.load_state_dict(mem.state_dict())
        v2, i2 = vis.clone(), ir.clone()
        x = F.normalize(feats, dim=1)
        cm_hard_update(v2, x, labels, 0.2)
        cm_hard_update(i2, x, labels, 0.2)
        check.update(feats, labels, modality)
        torch.testing.assert_close(check.visible, v2, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(check.infrared, i2, rtol=1e-6, atol=1e-6)

        tc, tr, ratio = compare(candidate, reference, rounds=args.rounds, device=args.device)
        name = f"update B={b} C={c} d={d} validate={validate}"
        rows.append((name, tc / args.inner, tr / args.inner, ratio, ">= 5x (ratio <= 0.2)"))
    print_table(rows, f"CPC memory update vs CM_Hard loop ({device}, {args.threads} thread(s))")
    for name, tc, tr, _, _ in rows:
        print(f"{name}: speed-up {tr / tc:.1f}x")


if __name__ == "__main__":
    main()
