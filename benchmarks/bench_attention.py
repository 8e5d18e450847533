"""Benchmark: SII, LII and CII (absorbed single-query attention) against explicit K/V blocks.

Targets (issue 2), forward + backward (input and parameter gradients) at the paper's shapes
(16 clips x 10 frames x 162 patches, D = 768, 12 heads) on CPU:

- SII, LII: the module <= 0.25x the same module with ``attn_impl="explicit"`` (a block that
  computes K and V for every patch token).
- CII: the module <= 0.25x a full self-attention block over the 163 tokens ``[query; patches]``
  (the same parameters run as a standard ViT block, token 0 kept, averaged over frames).

    python benchmarks/bench_attention.py            # paper shapes (about a minute)
    python benchmarks/bench_attention.py --quick    # small shapes, a few seconds
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from collections.abc import Callable

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import compare, print_table, set_threads

from xreid import CII, LII, SII
from xreid.layers.attention import set_attention_impl


def _fwd_bwd(module: nn.Module, forward: Callable[[], torch.Tensor],
             inputs: list[torch.Tensor]) -> Callable[[], object]:
    params = [p for p in module.parameters() if p.requires_grad]

    def run() -> object:
        out = forward()
        return torch.autograd.grad(out, [*inputs, *params], torch.ones_like(out))

    return run


def _explicit_copy(module: nn.Module) -> nn.Module:
    """The same module and weights, attention computed with K/V for every token."""
    return set_attention_impl(copy.deepcopy(module), "explicit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="B=4, T=4, N=32, D=128, 4 heads")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    set_threads(args.threads)
    torch.manual_seed(0)
    b, t, n, d, h = (4, 4, 32, 128, 4) if args.quick else (16, 10, 162, 768, 12)
    dev = args.device
    tokens = torch.randn(b, t, 1 + n, d, device=dev, requires_grad=True)
    query = torch.randn(b, d, device=dev, requires_grad=True)
    patches = torch.randn(b, t, n, d, device=dev, requires_grad=True)

    rows = []
    for name, mod in (("SII", SII(d, h)), ("LII", LII(d, h, stride=2))):
        mod = mod.to(dev)
        ref = _explicit_copy(mod)
        c, r, ratio = compare(
            _fwd_bwd(mod, lambda m=mod: m(tokens), [tokens]),
            _fwd_bwd(ref, lambda m=ref: m(tokens), [tokens]),
            rounds=args.rounds, warmup=1, device=dev,
        )
        rows.append((f"{name} fwd+bwd / explicit K/V", c, r, ratio, "<= 0.25"))

    cii = CII(d, h).to(dev)
    block = cii.blocks[0]

    def full_self_attention() -> torch.Tensor:
        x = torch.cat([query[:, None, None].expand(b, t, 1, d), patches], dim=2)
        out = block.forward_tokens(x.reshape(b * t, 1 + n, d))[:, 0]
        return out.reshape(b, t, d).mean(dim=1)

    c, r, ratio = compare(
        _fwd_bwd(cii, lambda: cii(query, patches), [query, patches]),
        _fwd_bwd(cii, full_self_attention, [query, patches]),
        rounds=args.rounds, warmup=1, device=dev,
    )
    rows.append(("CII fwd+bwd / full self-attention (1+N tok)", c, r, ratio, "<= 0.25"))
    cii_explicit = _explicit_copy(cii)
    c, r, ratio = compare(
        _fwd_bwd(cii, lambda: cii(query, patches), [query, patches]),
        _fwd_bwd(cii_explicit, lambda: cii_explicit(query, patches), [query, patches]),
        rounds=args.rounds, warmup=1, device=dev,
    )
    rows.append(("CII fwd+bwd / explicit single-query K/V", c, r, ratio, "(info)"))
    where = dev if dev == "cpu" else torch.cuda.get_device_name()
    print_table(rows, f"single-query attention, B={b} T={t} N={n} D={d} heads={h} float32, "
                      f"{where}, {torch.get_num_threads()} threads, median of {args.rounds} rounds")


if __name__ == "__main__":
    main()
