"""Benchmark: temporal token shift (Eq. 5) forward + backward against ``clone()``.

Target (issue 2): ``temporal_shift`` forward+backward <= 1.5x ``clone()`` forward+backward
on (16, 10, 162, 768) float32 on CPU. Also shown, for context: the same shift written with
``torch.cat`` of slices (plain autograd), which is what a naive implementation costs, and the
authors' shift (a ``clone`` of the detached tokens, then two overlapping in-place slice copies;
forward only, since their SII input is detached; on CPU it also gives a wrong result, see
``docs/differences.md``).

    python benchmarks/bench_token_shift.py            # paper shape
    python benchmarks/bench_token_shift.py --quick    # small shape, a few seconds
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import compare, print_table, set_threads

from xreid import temporal_shift


def authors_shift(x: torch.Tensor, fold_div: int = 4) -> torch.Tensor:
    """The authors' shift: clone, then in-place copies whose source and target overlap."""
    out = x.clone()
    f = x.shape[-1] // fold_div
    out[:, 1:, :, :f] = out[:, :-1, :, :f]
    out[:, :-1, :, f : 2 * f] = out[:, 1:, :, f : 2 * f]
    return out


def cat_shift(x: torch.Tensor, fold_div: int = 4) -> torch.Tensor:
    """Eq. 5 via ``torch.cat`` of slices (autograd through Slice/Cat nodes)."""
    f = x.shape[-1] // fold_div
    a = torch.cat([x[:, :1, :, :f], x[:, :-1, :, :f]], dim=1)
    b = torch.cat([x[:, 1:, :, f : 2 * f], x[:, -1:, :, f : 2 * f]], dim=1)
    return torch.cat([a, b, x[..., 2 * f :]], dim=-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shape (4, 10, 50, 256)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    set_threads(args.threads)
    torch.manual_seed(0)
    shape = (4, 10, 50, 256) if args.quick else (16, 10, 162, 768)
    x = torch.randn(shape, device=args.device, requires_grad=True)
    g = torch.randn(shape, device=args.device)

    def fwd_bwd(fn):
        return lambda: torch.autograd.grad(fn(x), x, g)

    def fwd(fn):
        def run() -> None:
            with torch.no_grad():
                fn(x)

        return run

    rows = []
    c, r, ratio = compare(fwd_bwd(temporal_shift), fwd_bwd(torch.clone), rounds=args.rounds,
                          device=args.device)
    rows.append(("temporal_shift fwd+bwd / clone fwd+bwd", c, r, ratio, "<= 1.5"))
    c, r, ratio = compare(fwd(temporal_shift), fwd(torch.clone), rounds=args.rounds,
                          device=args.device)
    rows.append(("temporal_shift fwd / clone fwd", c, r, ratio, "(info)"))
    c, r, ratio = compare(fwd(temporal_shift), fwd(authors_shift), rounds=args.rounds,
                          device=args.device)
    rows.append(("temporal_shift fwd / authors' in-place shift", c, r, ratio, "(anchor)"))
    c, r, ratio = compare(fwd_bwd(cat_shift), fwd_bwd(torch.clone), rounds=args.rounds,
                          device=args.device)
    rows.append(("cat-of-slices shift fwd+bwd / clone fwd+bwd", c, r, ratio, "(info)"))
    dev = args.device if args.device == "cpu" else torch.cuda.get_device_name()
    print_table(rows, f"token shift, shape {shape} float32, {dev}, "
                      f"{torch.get_num_threads()} threads, median of {args.rounds} rounds")


if __name__ == "__main__":
    main()
