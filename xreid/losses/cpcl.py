"""Cross-modality Prototype Collaboration Loss (CPCL), paper Eqs. 3-4.

Every sample b* of either modality (B of them) is classified against **both** prototype
memories with a temperature-scaled cosine softmax over all C identities:

    L_CPCL = CE(cos(b*, M^vis) / tau, y) + CE(cos(b*, M^ir) / tau, y)

each cross-entropy averaged over the batch. The paper writes Eqs. 3-4 without a temperature
and with a softmax over the P identities of the batch; the authors' code (and this module)
uses tau = 0.05 and all C identities (``docs/differences.md``, "CPC memory and CPCL").

Shapes: features (B, d), labels (B,) in [0, C), visible (C, d), infrared (C, d) -> scalar.
The loss is computed in float32 with autocast disabled (a bf16 cosine divided by tau = 0.05
would carry errors of ~0.1 in the logits); gradients flow back to ``features`` in its own
dtype. Prototypes get no gradient in the memory use case (they are buffers) but the function
itself is differentiable in all floating inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xreid._validation import check_floating, check_same_length, check_tensor

__all__ = ["CPCL", "PrototypeCollaborationLoss", "prototype_collaboration_loss"]


def _check_integer(x: torch.Tensor, name: str) -> None:
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise ValueError(f"{name}: expected an integer tensor, got dtype {x.dtype}")


def _check_label_range(labels: torch.Tensor, num_classes: int, name: str = "labels") -> None:
    """Raise if a label is outside [0, num_classes): one host sync, skipped under compile."""
    if labels.numel() == 0 or torch.compiler.is_compiling():
        return
    lo, hi = torch.stack([labels.min(), labels.max()]).tolist()
    if lo < 0 or hi >= num_classes:
        raise ValueError(
            f"{name}: expected values in [0, {num_classes}), got values in [{lo}, {hi}]"
        )


def _check_cpcl_inputs(
    features: object, labels: object, visible: object, infrared: object
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Metadata checks only (no host synchronisation)."""
    f = check_floating(check_tensor(features, "features", ndim=2, layout="(B, d)"), "features")
    y = check_tensor(labels, "labels", ndim=1, layout="(B,)")
    _check_integer(y, "labels")
    check_same_length("features", f, "labels", y)
    d = f.shape[1]
    v = check_tensor(visible, "visible", ndim=2, dims={1: d}, layout="(C, d)")
    check_floating(v, "visible")
    i = check_tensor(infrared, "infrared", ndim=2, dims={1: d}, layout="(C, d)")
    check_floating(i, "infrared")
    if i.shape[0] != v.shape[0]:
        raise ValueError(
            f"infrared: expected {v.shape[0]} rows (C) to match visible, got {i.shape[0]}"
        )
    return f, y, v, i


def _cpcl(
    features: torch.Tensor,
    labels: torch.Tensor,
    visible: torch.Tensor,
    infrared: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Eqs. 3-4 without validation (the caller has checked the inputs)."""
    if features.shape[0] == 0:
        # mean over an empty batch is undefined: report 0, keep the graph connected
        return features.float().sum() * 0.0
    with torch.autocast(device_type=features.device.type, enabled=False):
        f = F.normalize(features.float(), dim=1)
        y = labels.long()
        # F.normalize returns fresh tensors, so autograd saves these copies and never the
        # caller's prototype buffers: an in-place memory update before backward is safe.
        pv = F.normalize(visible.float(), dim=1)
        pi = F.normalize(infrared.float(), dim=1)
        loss_vis = F.cross_entropy(f @ pv.t() / temperature, y)  # Eq. 3
        loss_ir = F.cross_entropy(f @ pi.t() / temperature, y)  # Eq. 4
    return loss_vis + loss_ir


def prototype_collaboration_loss(
    features: torch.Tensor,
    labels: torch.Tensor,
    visible: torch.Tensor,
    infrared: torch.Tensor,
    temperature: float = 0.05,
) -> torch.Tensor:
    """Functional CPCL (Eqs. 3-4); see :class:`PrototypeCollaborationLoss`."""
    f, y, v, i = _check_cpcl_inputs(features, labels, visible, infrared)
    _check_label_range(y, v.shape[0])
    return _cpcl(f, y, v, i, float(temperature))


class PrototypeCollaborationLoss(nn.Module):
    """CPCL, Eqs. 3-4: cosine-softmax classification against both prototype memories.

    ``forward(features (B, d), labels (B,), visible (C, d), infrared (C, d)) -> scalar``
    equal to ``CE(cos(f, visible) / tau, y) + CE(cos(f, infrared) / tau, y)``, each CE
    averaged over the batch, softmax over all C identities. Features and prototypes are
    L2-normalised inside (cosine similarity). Computed in float32 even under autocast.
    An empty batch (B = 0) gives a zero loss.

    Validation: shapes and dtypes always; label range with one host synchronisation
    (skipped while ``torch.compile`` traces, where the check would break the graph).

    Args:
        temperature: tau > 0 (0.05 in the authors' code).
    """

    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature: expected a positive float, got {temperature}")
        self.temperature = float(temperature)

    def forward(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        visible: torch.Tensor,
        infrared: torch.Tensor,
    ) -> torch.Tensor:
        return prototype_collaboration_loss(
            features, labels, visible, infrared, self.temperature
        )

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


CPCL = PrototypeCollaborationLoss
