"""Cross-Modality Constraint Loss, CMCL (paper Eq. 9).

Pulls a sequence feature towards its counterpart after cross-modal interaction (CII)::

    L_CMCL = 1/(PK) * sum_i ||Ō_i - O_CMII,i||_2^2                                 (9)

Shapes: ``a (B, D)``, ``b (B, D) -> scalar`` (mean over the B rows of the squared
Euclidean distance; ``B = PK``).
"""

from __future__ import annotations

import torch
from torch import nn

from xreid._validation import check_floating, check_tensor, shape_str

__all__ = ["CMCL", "CrossModalConstraintLoss"]

_REDUCTIONS = ("mean", "sum", "none")


class CrossModalConstraintLoss(nn.Module):
    """CMCL: ``mean_i ||a_i - b_i||^2`` (Eq. 9).

    ``forward(a (B, D), b (B, D)) -> scalar``. Gradients flow into both arguments (the
    paper constrains both the features and their CII counterparts); pass ``b.detach()`` for
    a one-sided pull. Accumulates in at least float32 (safe under autocast).

    Args:
        reduction: ``"mean"`` (Eq. 9, default), ``"sum"`` or ``"none"`` (per-row ``(B,)``).
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction: expected one of {_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        check_tensor(a, "a", ndim=2, layout="(B, D)")
        check_tensor(b, "b", ndim=2, layout="(B, D)")
        check_floating(a, "a")  # refuses complex (|a - b|^2 is not what .pow(2) gives) and ints
        check_floating(b, "b")
        if a.shape != b.shape:
            raise ValueError(
                f"b: expected the shape of a {shape_str(a)} (B, D), got shape {shape_str(b)}"
            )
        acc = torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32)
        per_row = (a.to(acc) - b.to(acc)).pow(2).sum(dim=1)
        if per_row.numel() == 0 and self.reduction != "none":
            return per_row.sum()  # an empty batch gives 0, like the other losses
        if self.reduction == "mean":
            return per_row.mean()
        if self.reduction == "sum":
            return per_row.sum()
        return per_row


CMCL = CrossModalConstraintLoss
