"""Cross-modality Prototype Collaboration Loss (CPCL), paper Eqs. 3-4.

Every sample b* of either modality (B of them) is classified against **both** prototype
memories with a temperature-scaled cosine softmax over all C identities:

    L_CPCL = CE(cos(b*, M^vis) / tau, y) + CE(cos(b*, M^ir) / tau, y)

each cross-entropy averaged over the batch (``form="memory"``, the default; the authors'
code). The paper prints Eqs. 3-4 differently: the cosine similarity ``<b*, M_j>`` (sample
and prototype both L2-normalised) **without a temperature**, and a softmax over only the P
identities present in the batch (``sum_{j=1}^P``):

    L_CPCL (form="paper") = mean_b [ -log softmax_{j in P}(cos(b, M^vis_j))[y_b] ]
                          + mean_b [ -log softmax_{j in P}(cos(b, M^ir_j))[y_b] ]

``form="paper"`` computes this printed form, so that the two can be compared in a study
(see ``docs/differences.md``): the identities absent from the batch get a logit of -inf,
which is the same softmax over the P present ones without any data-dependent shape or host
synchronisation; ``temperature`` is not used. Its logits lie in [-1, 1], so each of the two
terms stays above ``log(1 + (P - 1) / e^2)`` (0.34 for P = 4): without a temperature the
printed form cannot make the softmax confident.

Shapes: features (B, d), labels (B,) in [0, C), visible (C, d), infrared (C, d) -> scalar.
The loss is computed in float32 (float64 for float64 features) with autocast disabled (a
bf16 cosine divided by tau = 0.05 would carry errors of ~0.1 in the logits); gradients
flow back to ``features`` in its own dtype. Prototypes get no gradient in the memory use
case (they are buffers) but the function itself is differentiable in all floating inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xreid._torch_utils import is_compiling
from xreid._validation import (
    check_floating,
    check_integer_dtype,
    check_same_length,
    check_tensor,
)

__all__ = ["CPCL", "CPCL_FORMS", "PrototypeCollaborationLoss", "prototype_collaboration_loss"]

CPCL_FORMS: tuple[str, ...] = ("memory", "paper")
"""``"memory"``: cosine / tau over all C identities (authors' code); ``"paper"``: Eqs. 3-4 as
printed, cosine without temperature over the batch's P identities."""


def check_cpcl_form(form: object) -> str:
    """``form`` if it is one of :data:`CPCL_FORMS`, else ``ValueError`` naming it."""
    if form not in CPCL_FORMS:
        raise ValueError(f"form: expected one of {list(CPCL_FORMS)}, got {form!r}")
    return str(form)


def _check_label_range(labels: torch.Tensor, num_classes: int, name: str = "labels") -> None:
    """Raise if a label is outside [0, num_classes): one host sync, skipped under compile."""
    if labels.numel() == 0 or is_compiling():
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
    check_integer_dtype(y, "labels")
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
    form: str = "memory",
) -> torch.Tensor:
    """Eqs. 3-4 without validation (the caller has checked the inputs)."""
    if features.shape[0] == 0:
        # mean over an empty batch is undefined: report 0, keep the graph connected
        return features.float().sum() * 0.0
    with torch.autocast(device_type=features.device.type, enabled=False):
        y = labels.long()
        dtype = torch.promote_types(features.dtype, torch.float32)  # float64 stays float64
        # F.normalize returns fresh tensors, so autograd saves these copies and never the
        # caller's prototype buffers: an in-place memory update before backward is safe.
        pv = F.normalize(visible.to(dtype), dim=1)
        pi = F.normalize(infrared.to(dtype), dim=1)
        f = F.normalize(features.to(dtype), dim=1)
        if form == "paper":
            present = torch.zeros(pv.shape[0], dtype=torch.bool, device=f.device)
            present = present.index_fill(0, y, True)
            absent = torch.where(present, 0.0, float("-inf"))  # softmax over the P present
            loss_vis = F.cross_entropy(f @ pv.t() + absent, y)  # Eq. 3 as printed
            loss_ir = F.cross_entropy(f @ pi.t() + absent, y)  # Eq. 4 as printed
        else:
            loss_vis = F.cross_entropy(f @ pv.t() / temperature, y)  # Eq. 3
            loss_ir = F.cross_entropy(f @ pi.t() / temperature, y)  # Eq. 4
    return loss_vis + loss_ir


def prototype_collaboration_loss(
    features: torch.Tensor,
    labels: torch.Tensor,
    visible: torch.Tensor,
    infrared: torch.Tensor,
    temperature: float = 0.05,
    form: str = "memory",
    *,
    validate: bool = True,
) -> torch.Tensor:
    """Functional CPCL (Eqs. 3-4); see :class:`PrototypeCollaborationLoss`.

    ``validate=False`` skips the shape, dtype and label-range checks (no host
    synchronisation): for a caller that has checked its inputs already, such as
    :class:`~xreid.memory.CrossModalPrototypeMemory`. The value is the same.
    """
    form = check_cpcl_form(form)
    if not validate:
        return _cpcl(features, labels, visible, infrared, float(temperature), form)
    f, y, v, i = _check_cpcl_inputs(features, labels, visible, infrared)
    _check_label_range(y, v.shape[0])
    return _cpcl(f, y, v, i, float(temperature), form)


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
        temperature: tau > 0 (0.05 in the authors' code); unused by ``form="paper"``.
        form: ``"memory"`` (above, the default) or ``"paper"`` (Eqs. 3-4 as printed: cosine
            similarity without temperature, softmax over the identities present in the batch).
    """

    def __init__(self, temperature: float = 0.05, form: str = "memory") -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature: expected a positive float, got {temperature}")
        self.temperature = float(temperature)
        self.form = check_cpcl_form(form)

    def forward(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        visible: torch.Tensor,
        infrared: torch.Tensor,
    ) -> torch.Tensor:
        return prototype_collaboration_loss(
            features, labels, visible, infrared, self.temperature, self.form
        )

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, form={self.form!r}"


CPCL = PrototypeCollaborationLoss
