"""Batch-hard triplet loss (Hermans, Beyer and Leibe 2017), the L_tri of Eq. 10.

For every anchor a of the batch: d_ap = the largest Euclidean distance to a positive (same
label, other sample) and d_an = the smallest distance to a negative (different label);

    hard margin (margin=m):    l_a = max(0, d_ap - d_an + m)      (MarginRankingLoss)
    soft margin (margin=None): l_a = log(1 + exp(d_ap - d_an))    (SoftMarginLoss)

and the loss is the mean of l_a over the anchors. Distances follow the reference code
(``loss/triplet_loss.py``): ``sqrt(clamp(|x|^2 + |y|^2 - 2 x.y, min=1e-12))`` on the raw
(un-normalised) features, both modalities mixed.

Anchors without a positive (the only sample of their identity in the batch) or without a
negative (a batch with a single identity) have no triplet: they are left out of the mean
(no host synchronisation: a masked mean). If no anchor has a triplet the loss is 0, still
connected to the graph (zero gradient). The reference code instead counts the anchor itself
as its own positive (d_ap = 1e-6); with every identity present at least twice, as with the
PK sampler, both agree. Ties between equally hard samples send the gradient to one of them
(``torch.max`` / ``torch.min`` semantics).

Shapes: features (B, *) (flattened to (B, D)), labels (B,) integer -> scalar. Computed in
float32 with autocast disabled.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xreid._validation import (
    check_floating,
    check_integer_dtype,
    check_same_length,
    check_tensor,
)

__all__ = ["TripletLoss", "batch_hard_triplet_loss", "euclidean_dist"]


def euclidean_dist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(M, D), (N, D) -> (M, N) Euclidean distances, ``sqrt(clamp(d^2, min=1e-12))``."""
    xx = x.pow(2).sum(dim=1, keepdim=True)
    yy = y.pow(2).sum(dim=1, keepdim=True).t()
    d2 = xx + yy - 2.0 * (x @ y.t())
    return d2.clamp(min=1e-12).sqrt()


def batch_hard_triplet_loss(
    features: torch.Tensor, labels: torch.Tensor, margin: float | None = 0.3
) -> torch.Tensor:
    """Functional form of :class:`TripletLoss` (inputs already validated)."""
    b = features.shape[0]
    if b == 0:
        return features.float().sum() * 0.0
    with torch.autocast(device_type=features.device.type, enabled=False):
        x = features.reshape(b, -1).float()
        dist = euclidean_dist(x, x)  # (B, B)
        same = labels.unsqueeze(0) == labels.unsqueeze(1)
        eye = torch.eye(b, dtype=torch.bool, device=x.device)
        pos = same & ~eye
        neg = ~same
        d_ap = torch.where(pos, dist, -torch.inf).max(dim=1).values  # hardest positive
        d_an = torch.where(neg, dist, torch.inf).min(dim=1).values  # hardest negative
        valid = pos.any(dim=1) & neg.any(dim=1)
        # sanitise anchors without a triplet before the loss (no inf reaches autograd)
        d_ap = torch.where(valid, d_ap, 0.0)
        d_an = torch.where(valid, d_an, 0.0)
        if margin is None:
            per_anchor = F.softplus(d_ap - d_an)
        else:
            per_anchor = F.relu(d_ap - d_an + margin)
        w = valid.to(per_anchor.dtype)
        return (per_anchor * w).sum() / w.sum().clamp(min=1.0)


class TripletLoss(nn.Module):
    """Batch-hard triplet loss with Euclidean distance (Hermans et al. 2017), Eq. 10's L_tri.

    ``forward(features (B, *), labels (B,)) -> scalar``. See the module docstring for the
    exact definition and the handling of anchors without a positive or a negative.

    Args:
        margin: the hard margin m (0.3 in the reference); ``None`` gives the soft-margin
            form ``softplus(d_ap - d_an)``.
    """

    def __init__(self, margin: float | None = 0.3) -> None:
        super().__init__()
        if margin is not None and not margin >= 0:
            raise ValueError(f"margin: expected a float >= 0 or None, got {margin!r}")
        self.margin = None if margin is None else float(margin)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        f = check_tensor(features, "features", layout="(B, *)")
        if f.dim() < 2:
            raise ValueError(f"features: expected a tensor (B, *) with >= 2 dims, got shape "
                             f"{tuple(f.shape)}")
        check_floating(f, "features")
        y = check_tensor(labels, "labels", ndim=1, layout="(B,)")
        check_integer_dtype(y, "labels")
        check_same_length("features", f, "labels", y)
        if y.device != f.device:
            raise ValueError(f"labels: expected a tensor on {f.device}, got {y.device}")
        return batch_hard_triplet_loss(f, y, self.margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"
