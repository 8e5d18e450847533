"""The X-ReID training objective, Eq. 10, with one weight per term.

    L_total = w_cpcl L_CPCL + w_tri L_tri + w_id L_ce + w_frame L_frame + w_cmcl L_CMCL

Terms (B clips, T frames, C identities; all from one :class:`xreid.XReIDOutput`):

- ``cpcl``: ``memory(output.memory_feature, labels, modality)``, the CPCL loss (Eqs. 3-4)
  of the (B, d_mem) memory feature against the prototype memories. Without a memory
  (``memory=None``, a model built with ``use_memory=False``) the term is simply absent.
- ``triplet``: batch-hard triplet loss (margin ``margin``) summed over
  ``output.triplet_features`` (each (B, *)).
- ``id``: ``CrossEntropyLoss(label_smoothing=label_smoothing)`` summed over
  ``output.logits`` (each (B, C)).
- ``frame_id``: the same cross-entropy summed over ``output.frame_logits`` (each (B*T, C),
  row ``b*T + t``) with labels ``labels.repeat_interleave(T)``, ``T = rows // B``.
- ``cmcl``: :class:`xreid.CrossModalConstraintLoss` (Eq. 9) summed over
  ``output.cmcl_pairs``.

Presets:

- :meth:`XReIDLoss.paper`: Eq. 10 as printed: cpcl = triplet = id = cmcl = 1, frame_id = 0,
  margin 0.3, no label smoothing.
- :meth:`XReIDLoss.official`: the authors' released code (``docs/differences.md``, "Losses"):
  ``0.25 * (CE_clip + CE_sii) + (Tri_cls + Tri_proj + Tri_sii) + CPCL_rgb + CPCL_ir
  + (CE_frame_clip + CE_frame_sii) / T``, i.e. id = 0.25, triplet = 1, cpcl = 1,
  frame_id = 1 / T (T = ``num_frames``, 10), cmcl = 0 (CII/CMCL are absent from the code),
  margin 0.3, no label smoothing (the code's ``IF_LABELSMOOTH: 'on'`` still builds a plain
  ``CrossEntropyLoss``). Which features and logits enter each sum is the model's business:
  the loss sums whatever ``XReIDOutput`` carries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from xreid._validation import (
    check_integer_dtype,
    check_labels,
    check_positive_int,
    check_tensor,
)
from xreid.losses.triplet import TripletLoss
from xreid.presets import LOSS_PRESETS

if TYPE_CHECKING:  # pragma: no cover
    from xreid.memory.prototype_memory import CrossModalPrototypeMemory
    from xreid.models.output import XReIDOutput

__all__ = ["LOSS_PRESETS", "TERMS", "LossOutput", "XReIDLoss"]

TERMS: tuple[str, ...] = ("cpcl", "triplet", "id", "frame_id", "cmcl")
"""Names of the Eq. 10 terms, in reporting order."""


@dataclass
class LossOutput:
    """Result of :class:`XReIDLoss`.

    Attributes:
        total: scalar, the weighted sum of the terms (what to call ``backward()`` on).
        terms: every computed term, **unweighted** and detached (for logging). A term is
            present when the output carries its inputs (e.g. no ``cmcl`` key without
            ``cmcl_pairs``), also when its weight is 0 (then computed without gradient).
        weights: the weight of every term in :data:`TERMS`.
    """

    total: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)

    @property
    def weighted(self) -> dict[str, torch.Tensor]:
        """Each term times its weight (detached); they sum to ``total``."""
        return {k: v * self.weights.get(k, 0.0) for k, v in self.terms.items()}

    def to_floats(self) -> dict[str, float]:
        """``{"total": ..., <term>: ...}`` as Python floats (one host synchronisation)."""
        keys = ["total", *self.terms]
        values = torch.stack([self.total.detach().float(),
                              *(v.float() for v in self.terms.values())]).tolist()
        return dict(zip(keys, values))


def _check_rows(x: object, name: str, b: int) -> torch.Tensor:
    t = check_tensor(x, name, layout="(B, *)")
    if t.dim() < 1 or t.shape[0] != b:
        raise ValueError(f"{name}: expected {b} rows (B, *) to match labels, got shape "
                         f"{tuple(t.shape)}")
    return t




class XReIDLoss(nn.Module):
    """Eq. 10: CPCL + triplet + ID cross-entropy (+ frame ID) + CMCL, weighted and reported.

    ``forward(output: XReIDOutput, labels (B,), memory: CrossModalPrototypeMemory | None,
    modality (B,) | None) -> LossOutput``. ``modality`` is handed to the memory (needed by a
    memory with ``collaboration=False``); with ``memory=None`` the CPCL term is skipped.
    See the module docstring for every term and the two presets.

    Args (keyword-only; weights are floats >= 0):
        cpcl: weight of the CPCL term (computed only when a ``memory`` is passed).
        triplet: weight of the batch-hard triplet term.
        id: weight of the clip-level identity cross-entropy.
        cmcl: weight of the cross-modality constraint loss (Eq. 9).
        frame_id: weight of the frame-level identity cross-entropy (0 in the paper,
            1 / T in the authors' code).
        margin: triplet margin; ``None`` for the soft margin.
        label_smoothing: for both cross-entropies.

    A term whose weight is 0 is still computed for logging when its inputs are present, but
    without gradient and outside ``total``.
    """

    def __init__(
        self,
        *,
        cpcl: float = 1.0,
        triplet: float = 1.0,
        id: float = 1.0,
        cmcl: float = 1.0,
        frame_id: float = 0.0,
        margin: float | None = 0.3,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        weights = {"cpcl": cpcl, "triplet": triplet, "id": id, "frame_id": frame_id,
                   "cmcl": cmcl}
        for name, w in weights.items():
            if not (isinstance(w, (int, float)) and w >= 0):
                raise ValueError(f"{name}: expected a weight >= 0, got {w!r}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(
                f"label_smoothing: expected a float in [0, 1), got {label_smoothing!r}"
            )
        self.weights: dict[str, float] = {k: float(weights[k]) for k in TERMS}
        self.label_smoothing = float(label_smoothing)
        self.triplet_loss = TripletLoss(margin)
        self._cmcl: nn.Module | None = None

    @classmethod
    def from_preset(cls, name: str = "paper", *, num_frames: int = 10,
                    **overrides: Any) -> XReIDLoss:
        """The :data:`LOSS_PRESETS` entry ``name`` (its ``frame_id`` divided by
        ``num_frames``), then ``overrides`` (any constructor keyword, e.g. ``id=0.5`` or
        ``label_smoothing=0.1``), all checked by the constructor."""
        if name not in LOSS_PRESETS:
            raise ValueError(f"preset: expected one of {sorted(LOSS_PRESETS)}, got {name!r}")
        check_positive_int(num_frames, "num_frames")
        options: dict[str, Any] = dict(LOSS_PRESETS[name])
        options["frame_id"] = options["frame_id"] / num_frames
        options.update(overrides)
        return cls(**options)

    @classmethod
    def paper(cls) -> XReIDLoss:
        """Eq. 10 as printed: every weight 1, no frame-level loss, margin 0.3, no smoothing."""
        return cls.from_preset("paper")

    @classmethod
    def official(cls, num_frames: int = 10) -> XReIDLoss:
        """The authors' code (``docs/differences.md``, "Losses"): id 0.25, triplet 1, cpcl 1,
        frame_id 1 / ``num_frames``, cmcl 0, margin 0.3, no label smoothing."""
        return cls.from_preset("official", num_frames=num_frames)

    # ------------------------------------------------------------------ terms
    def _ce(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)

    def _cmcl_loss(self) -> nn.Module:
        if self._cmcl is None:
            from xreid.losses.cmcl import CrossModalConstraintLoss

            self._cmcl = CrossModalConstraintLoss()
        return self._cmcl

    def _term(self, name: str, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        if self.weights[name] > 0:
            return compute()
        with torch.no_grad():
            return compute()

    def forward(
        self,
        output: XReIDOutput,
        labels: torch.Tensor,
        memory: CrossModalPrototypeMemory | None = None,
        modality: torch.Tensor | None = None,
    ) -> LossOutput:
        y = check_tensor(labels, "labels", ndim=1, layout="(B,)")
        check_integer_dtype(y, "labels")
        y = y.long()
        b = y.shape[0]
        terms: dict[str, torch.Tensor] = {}

        if memory is not None:
            feat = _check_rows(output.memory_feature, "output.memory_feature", b)
            terms["cpcl"] = self._term("cpcl", lambda: memory(feat, y, modality))
        if memory is None and output.logits:  # without the memory nothing checks the range
            check_labels(y, "labels", output.logits[0].shape[-1])

        feats: Sequence[torch.Tensor] = output.triplet_features
        if feats:
            for i, f in enumerate(feats):
                _check_rows(f, f"output.triplet_features[{i}]", b)
            terms["triplet"] = self._term(
                "triplet", lambda: sum(self.triplet_loss(f, y) for f in feats)
            )

        logits: Sequence[torch.Tensor] = output.logits
        if logits:
            for i, lg in enumerate(logits):
                check_tensor(_check_rows(lg, f"output.logits[{i}]", b),
                             f"output.logits[{i}]", ndim=2, layout="(B, C)")
            terms["id"] = self._term("id", lambda: sum(self._ce(lg, y) for lg in logits))

        frame_logits: Sequence[torch.Tensor] = output.frame_logits
        if frame_logits:
            frame_labels: list[torch.Tensor] = []
            for i, lg in enumerate(frame_logits):
                name = f"output.frame_logits[{i}]"
                check_tensor(lg, name, ndim=2, layout="(B*T, C)")
                if b == 0 or lg.shape[0] % b != 0 or lg.shape[0] == 0:
                    raise ValueError(f"{name}: expected B*T rows with B = {b}, got shape "
                                     f"{tuple(lg.shape)}")
                frame_labels.append(y.repeat_interleave(lg.shape[0] // b))
            terms["frame_id"] = self._term(
                "frame_id",
                lambda: sum(self._ce(lg, fy) for lg, fy in zip(frame_logits, frame_labels)),
            )

        pairs = output.cmcl_pairs
        if pairs:
            for i, pair in enumerate(pairs):
                if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
                    raise ValueError(f"output.cmcl_pairs[{i}]: expected an (anchor, "
                                     f"interacted) pair of tensors, got {type(pair).__name__}")
            loss_fn = self._cmcl_loss()
            terms["cmcl"] = self._term("cmcl", lambda: sum(loss_fn(a, c) for a, c in pairs))

        total: torch.Tensor | None = None
        for name, value in terms.items():
            w = self.weights[name]
            if w > 0:
                total = value * w if total is None else total + value * w
        if total is None:
            ref = output.memory_feature
            total = ref.float().sum() * 0.0 if isinstance(ref, torch.Tensor) else \
                torch.zeros((), device=y.device)
        return LossOutput(
            total=total,
            terms={k: v.detach() for k, v in terms.items()},
            weights=dict(self.weights),
        )

    def extra_repr(self) -> str:
        w = ", ".join(f"{k}={v:g}" for k, v in self.weights.items())
        return f"{w}, margin={self.triplet_loss.margin}, label_smoothing={self.label_smoothing}"
