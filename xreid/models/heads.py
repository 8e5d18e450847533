"""BNNeck and identity classifier heads (as in the authors' code, ``docs/differences.md``)."""

from __future__ import annotations

from torch import nn

__all__ = ["BNNeck", "IdentityClassifier"]


class BNNeck(nn.BatchNorm1d):
    """``BatchNorm1d`` with weight 1, bias 0 and the bias frozen (BoT / CLIP-ReID BNNeck).

    Shapes: (B, D) -> (B, D).
    """

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)
        self.bias.requires_grad_(False)


class IdentityClassifier(nn.Linear):
    """Bias-free linear classifier initialised with N(0, 0.001^2). Shapes: (B, D) -> (B, C)."""

    def __init__(self, dim: int, num_identities: int) -> None:
        super().__init__(dim, num_identities, bias=False)
        nn.init.normal_(self.weight, std=0.001)
