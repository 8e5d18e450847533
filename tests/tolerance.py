"""Tolerances for float comparisons, derived from the dtype and the size of the computation.

Two computations of the same quantity that differ only in how their roundings fall (another
summation order, a fused kernel, another thread count or machine) each carry a relative error
of at most ``gamma_n = n * u / (1 - n * u)``, where ``u = eps / 2`` is the unit roundoff of the
dtype and ``n`` the number of roundings on the longest chain of the computation (``n`` for a
sum or a dot product of ``n`` terms; Higham, *Accuracy and Stability of Numerical Algorithms*,
section 3.1). Their difference is then at most ``2 * gamma_n`` times the magnitude of the
terms. This bound holds on every machine and at every thread count, which a tolerance tuned by
running the test on one machine does not.

Use it as ``assert_close(a, b, **rounding_tol(torch.float32, n))``; pass ``scale`` when the
terms are much larger than 1 in magnitude.
"""

from __future__ import annotations

import torch


def rounding_tol(dtype: torch.dtype, n: int, *, scale: float = 1.0) -> dict[str, float]:
    """``rtol``/``atol`` for two results of ``n`` roundings each in ``dtype``, terms ~``scale``."""
    if n < 1:
        raise ValueError(f"n: expected >= 1 roundings, got {n}")
    u = torch.finfo(dtype).eps / 2
    if n * u >= 0.5:
        raise ValueError(f"n: {n} roundings in {dtype} leave no exact bit; compare in float64")
    gamma = n * u / (1 - n * u)
    return {"rtol": 2 * gamma, "atol": 2 * gamma * scale}


def vit_roundings(*, patch_inputs: int, dim: int, depth: int, tokens: int,
                  mlp_ratio: float = 4.0, extra: int = 0) -> int:
    """Roundings on the longest chain of a ViT forward (an upper estimate for ``rounding_tol``).

    Patch embedding (a dot product over ``patch_inputs``), then per block: LayerNorm (two sums
    over ``dim``), scores (``dim``), softmax and values (``tokens`` each), projection
    (``dim``), LayerNorm (two sums over ``dim``), FFN (``dim`` and ``mlp_ratio * dim``); plus
    ``extra`` for what follows the blocks.
    """
    block = 2 * dim + dim + 2 * tokens + dim + 2 * dim + dim + int(mlp_ratio * dim)
    return patch_inputs + depth * block + extra
