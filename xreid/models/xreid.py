"""The full X-ReID model: backbone + CPC memory + MII (SII, LII) + CII + BNNeck heads.

Paper: "Proposed Method" (Fig. 2) and "Training and Inference". Shapes: B clips, T frames,
L = 1 + N tokens per frame, D backbone width, d projection width, C training identities.

Training forward (``model.train()``) on a batch of paired clips returns an
:class:`~xreid.models.output.XReIDOutput` with every feature and logit
:class:`~xreid.XReIDLoss` needs. The batch holds as many visible as infrared clips; the i-th
visible clip (in batch order) is paired with the i-th infrared clip, and both must show the
same identity (the batch order of :class:`xreid.data.CrossModalIdentitySampler` guarantees it).

Inference (``model.eval()``; ``model.embed`` or ``model(video)``) returns
``cat(BN(sequence), BN(projected), BN(MII feature))``: the original sequence-level feature
(TAP of the [CLS] tokens, D), its CLIP projection (TAP of the projected [CLS], d), and the
multi-granularity feature O of Eq. 8 (D), each after its BNNeck — exactly the authors'
2048-d paper-equivalent inference feature for ViT-B/16. CII is not used at inference.

Ablation switches (the paper's Tables 3-5, Figs. 4-5): ``use_sii``/``use_lii`` (with both off
the model has no MII at all, ``model.mii is None``, and the embedding is
``cat(BN(sequence), BN(projected))``), ``sii_stride`` / ``lii_stride``, ``use_cii``,
``use_memory`` (``False``: no CPC memory, ``model.memory is None``), ``hard_selection`` and
``memory_collaboration`` (the memory's update and loss rules, Table 4). With CII on and no
MII (Table 5, row 4) CII's query is the clip's sequence feature (TAP of the [CLS] tokens)
and CMCL constrains that feature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from xreid._validation import check_labels, check_positive_int, check_tensor, shape_str
from xreid.constants import INFRARED, VISIBLE
from xreid.layers.cross_modal import CrossModalInteraction
from xreid.layers.multi_granularity import MultiGranularityInteraction
from xreid.losses.cpcl import check_cpcl_form
from xreid.memory.prototype_memory import HARD_SELECTIONS, CrossModalPrototypeMemory
from xreid.models.heads import BNNeck, IdentityClassifier
from xreid.models.output import XReIDOutput
from xreid.presets import MODEL_PRESETS

__all__ = ["CMCL_BRANCHES", "CMCL_DIRECTIONS", "CMCL_STOP_GRADIENTS", "PRESETS", "XReID",
           "XReIDConfig"]


@dataclass(frozen=True)
class XReIDConfig:
    """Head options of :class:`XReID` (every field is also a keyword of ``XReID``).

    Attributes:
        num_heads: attention heads of SII/LII/CII (default ``D // 64``).
        sii_depth: stacked SII blocks (paper 1, authors' code 2).
        lii_depth: stacked LII blocks.
        lii_stride: LII time stride S (paper 2; 0 pairs every frame with itself).
        use_sii: build the SII branch (Eqs. 5-6); without it the MII feature is the LII mean.
        sii_stride: time stride S >= 1 of the SII token shift (paper 1; Fig. 4 tries 1-4).
            The first and last S frames keep their own channels in one fold each.
        use_lii: build the LII branch (Eq. 7); without it the MII feature is the SII mean.
            With ``use_sii=False`` and ``use_lii=False`` no MII is built (``mii is None``).
        use_cii: build CII + CMCL (Fig. 3d, Eq. 9). Without MII, CII's query is the clip's
            sequence feature (TAP of the [CLS] tokens) and CMCL constrains that.
        cii_depth: stacked CII blocks (the paper draws one).
        cmcl_branches: which MII branches feed CII and CMCL: ``"both"`` (the paper: "the
            features obtained from the SII are also subjected to the same constraint"),
            ``"sii"`` or ``"lii"`` (one branch; it must be on). Ignored without MII (the
            sequence feature is the only anchor).
        cmcl_directions: which way CII looks: ``"both"`` (visible queries infrared *and*
            infrared queries visible, the paper's "similarly" for the other modality),
            ``"v2i"`` (only the visible anchor queries the infrared patches, the single
            direction Eq. 9 writes out) or ``"i2v"``.
        cii_query_residual: keep the residual connection of CII's query token (the paper's
            block); ``False`` closes the CMCL shortcut (``docs/modules.md``).
        cmcl_stop_gradient: which side of Eq. 9 is a constant: ``"none"`` (the paper: both
            ``Ō`` and ``O_CMII`` get the gradient), ``"anchor"`` (``Ō`` is the target; CMCL
            trains CII and, through its inputs, the encoder to predict it) or
            ``"interaction"`` (``O_CMII`` is the target; CII gets no CMCL gradient).
        use_memory: build the CPC memory (``False``: ``memory is None``, no CPCL term).
        detach_mii: feed MII/CII a detached copy of the backbone tokens (authors' code), so
            the MII losses train only the heads.
        frame_logits: also return frame-level logits (authors' frame ID losses).
        mlp_ratio: FFN expansion of the interaction blocks.
        fold_div: channel fold of the SII token shift (Eq. 5 uses D/4).
        drop_path: stochastic depth in the interaction blocks.
        memory_momentum: mu of Eq. 1 (paper 0.2, authors' code 0.1).
        memory_temperature: tau of the CPCL softmax (authors' code 0.05).
        hard_selection: ``"cross_modal"`` (Eq. 2), ``"same_modality"`` (per-modality
            memories, PCL) or ``"any"`` (authors' code).
        memory_collaboration: ``True`` (Eqs. 3-4: every sample against both memories) or
            ``False`` (each sample against its own modality's memory only).
        cpcl_form: ``"memory"`` (cosine / tau over all C identities, the authors' code) or
            ``"paper"`` (Eqs. 3-4 as printed: cosine without tau over the batch's identities);
            :data:`xreid.losses.cpcl.CPCL_FORMS`.
        memory_shared: initialise both memories with the identity's centroid over *both*
            modalities (PCL's single memory; with ``hard_selection="any"`` the two stay
            identical, i.e. one memory). ``False``: per-modality centroids (the paper).
    """

    num_heads: int | None = None
    sii_depth: int = 1
    lii_depth: int = 1
    lii_stride: int = 2
    use_sii: bool = True
    sii_stride: int = 1
    use_lii: bool = True
    use_cii: bool = True
    cii_depth: int = 1
    cmcl_branches: Literal["both", "sii", "lii"] = "both"
    cmcl_directions: Literal["both", "v2i", "i2v"] = "both"
    cii_query_residual: bool = True
    cmcl_stop_gradient: Literal["none", "anchor", "interaction"] = "none"
    use_memory: bool = True
    detach_mii: bool = False
    frame_logits: bool = False
    mlp_ratio: float = 4.0
    fold_div: int = 4
    drop_path: float = 0.0
    memory_momentum: float = 0.2
    memory_temperature: float = 0.05
    hard_selection: Literal["cross_modal", "same_modality", "any"] = "cross_modal"
    memory_collaboration: bool = True
    cpcl_form: Literal["memory", "paper"] = "memory"
    memory_shared: bool = False


CMCL_BRANCHES: tuple[str, ...] = ("both", "sii", "lii")
"""Values of ``XReIDConfig.cmcl_branches``: the MII branches that feed CII / CMCL."""

CMCL_DIRECTIONS: tuple[str, ...] = ("both", "v2i", "i2v")
"""Values of ``XReIDConfig.cmcl_directions``: which modality's anchor queries the other's
patches in CII (``"v2i"``: the visible anchor, the infrared patches)."""

CMCL_STOP_GRADIENTS: tuple[str, ...] = ("none", "anchor", "interaction")
"""Values of ``XReIDConfig.cmcl_stop_gradient``: the side of Eq. 9 held constant."""

PRESETS = MODEL_PRESETS  # the table lives in xreid.presets with the others


class XReID(nn.Module):
    """X-ReID: a frame-token backbone with CPC prototypes, MII, CII and BNNeck heads.

    Args:
        backbone: a frame-token encoder (:func:`xreid.build_backbone`) with attributes
            ``embed_dim`` (D) and ``proj_dim`` (d) whose ``forward(video (B,T,3,H,W),
            cameras=None)`` returns ``FrameTokens(tokens (B,T,1+N,D), projected (B,T,d))``.
        num_identities: C, the number of training identities (labels in [0, C)).
        num_cameras: number of cameras; 0 uses the backbone's ``num_cameras``. Cameras are
            passed to the backbone (SIE on the [CLS] token) and validated here.
        **options: the fields of :class:`XReIDConfig`.

    Submodules: ``backbone``, ``memory`` (:class:`~xreid.CPCMemory` over the (D+d)-d
    clip feature ``cat(BN(sequence), BN(projected))``, as the authors' code; ``None`` with
    ``use_memory=False``), ``mii`` (``None`` with ``use_sii=use_lii=False``), ``cii`` (if
    ``use_cii``), BNNecks ``bn_sequence``, ``bn_projected``, ``bn_mii`` and classifiers
    ``classifier_clip`` ((D+d) -> C) and ``classifier_mii`` (D -> C) (the last two only with
    MII). With ``frame_logits`` also ``bn_sequence_frame``, ``bn_projected_frame``,
    ``bn_mii_frame`` (with MII) and ``classifier_clip_frame``; the MII frame logits share
    ``classifier_mii`` (authors).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_identities: int,
        *,
        num_cameras: int = 0,
        **options: Any,
    ) -> None:
        super().__init__()
        if num_identities < 1:
            raise ValueError(f"num_identities: expected a positive int, got {num_identities}")
        try:
            cfg = XReIDConfig(**options)
        except TypeError as exc:  # unknown keyword
            raise ValueError(f"XReID: {exc}") from None
        if cfg.hard_selection not in HARD_SELECTIONS:
            raise ValueError(
                f"hard_selection: expected one of {HARD_SELECTIONS}, got {cfg.hard_selection!r}"
            )
        if cfg.cmcl_stop_gradient not in CMCL_STOP_GRADIENTS:
            raise ValueError(
                f"cmcl_stop_gradient: expected one of {CMCL_STOP_GRADIENTS}, got "
                f"{cfg.cmcl_stop_gradient!r}"
            )
        for key, allowed in (("cmcl_branches", CMCL_BRANCHES),
                             ("cmcl_directions", CMCL_DIRECTIONS)):
            if getattr(cfg, key) not in allowed:
                raise ValueError(f"{key}: expected one of {allowed}, got {getattr(cfg, key)!r}")
        if cfg.use_cii and (cfg.use_sii or cfg.use_lii) and cfg.cmcl_branches != "both":
            branch = cfg.cmcl_branches
            if not getattr(cfg, f"use_{branch}"):
                raise ValueError(f"cmcl_branches: expected a branch that is on, got {branch!r} "
                                 f"with use_{branch}=False")
        check_positive_int(cfg.cii_depth, "cii_depth")
        check_cpcl_form(cfg.cpcl_form)
        if not isinstance(cfg.memory_shared, bool):
            raise ValueError(f"memory_shared: expected a bool, got {cfg.memory_shared!r}")
        dim = int(backbone.embed_dim)
        proj_dim = int(backbone.proj_dim)
        backbone_cams = int(getattr(backbone, "num_cameras", 0))
        if num_cameras and backbone_cams and num_cameras != backbone_cams:
            raise ValueError(
                f"num_cameras: expected {backbone_cams} (the backbone's camera embedding), "
                f"got {num_cameras}"
            )
        self.config = cfg
        self.num_identities = int(num_identities)
        self.num_cameras = int(num_cameras or backbone_cams)
        self.embed_dim = dim
        self.proj_dim = proj_dim
        num_heads = cfg.num_heads or max(1, dim // 64)

        self.backbone = backbone
        self.memory = (
            CrossModalPrototypeMemory(
                num_identities,
                dim + proj_dim,
                momentum=cfg.memory_momentum,
                temperature=cfg.memory_temperature,
                hard_selection=cfg.hard_selection,
                collaboration=cfg.memory_collaboration,
                form=cfg.cpcl_form,
                shared=cfg.memory_shared,
            )
            if cfg.use_memory
            else None
        )
        self.mii = (
            MultiGranularityInteraction(
                dim,
                num_heads,
                lii_stride=cfg.lii_stride,
                sii_depth=cfg.sii_depth,
                lii_depth=cfg.lii_depth,
                use_sii=cfg.use_sii,
                sii_stride=cfg.sii_stride,
                use_lii=cfg.use_lii,
                mlp_ratio=cfg.mlp_ratio,
                fold_div=cfg.fold_div,
                drop_path=cfg.drop_path,
            )
            if cfg.use_sii or cfg.use_lii
            else None
        )
        self.cii = (
            CrossModalInteraction(dim, num_heads, depth=cfg.cii_depth, mlp_ratio=cfg.mlp_ratio,
                                  drop_path=cfg.drop_path,
                                  query_residual=cfg.cii_query_residual)
            if cfg.use_cii
            else None
        )
        self.bn_sequence = BNNeck(dim)
        self.bn_projected = BNNeck(proj_dim)
        self.classifier_clip = IdentityClassifier(dim + proj_dim, num_identities)
        if self.mii is not None:
            self.bn_mii = BNNeck(dim)
            self.classifier_mii = IdentityClassifier(dim, num_identities)
        if cfg.frame_logits:
            self.bn_sequence_frame = BNNeck(dim)
            self.bn_projected_frame = BNNeck(proj_dim)
            if self.mii is not None:
                self.bn_mii_frame = BNNeck(dim)
            self.classifier_clip_frame = IdentityClassifier(dim + proj_dim, num_identities)

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_preset(
        cls,
        backbone: nn.Module,
        num_identities: int,
        preset: str = "paper",
        *,
        num_cameras: int = 0,
        **overrides: Any,
    ) -> XReID:
        """Build with the ``"paper"`` or ``"official"`` head options, then ``overrides``."""
        if preset not in PRESETS:
            raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got {preset!r}")
        options = {**PRESETS[preset], **overrides}
        return cls(backbone, num_identities, num_cameras=num_cameras, **options)

    @property
    def embedding_dim(self) -> int:
        """E, the size of the inference embedding: D + d + D (D + d without MII)."""
        return self.embed_dim + self.proj_dim + (self.embed_dim if self.mii is not None else 0)

    # ------------------------------------------------------------------------- validation
    def _check_video(self, video: object, name: str = "video") -> torch.Tensor:
        return check_tensor(video, name, ndim=5, layout="(B, T, 3, H, W)")

    def _check_cameras(self, cameras: torch.Tensor | None, batch: int) -> None:
        if cameras is None:
            return
        if self.num_cameras == 0:
            raise ValueError(
                "cameras: this model has no camera embedding (num_cameras=0), got a tensor; "
                "pass cameras=None or build the backbone with num_cameras > 0"
            )
        check_labels(cameras, "cameras", self.num_cameras, length=batch)

    # ---------------------------------------------------------------------------- forward
    def _encode(self, video: torch.Tensor, cameras: torch.Tensor | None):
        out = self.backbone(video, cameras)
        return out.tokens, out.projected

    def embed(self, video: torch.Tensor, cameras: torch.Tensor | None = None) -> torch.Tensor:
        """Inference embedding (B, E) = cat(BN(sequence), BN(projected), BN(MII feature)).

        Without MII (``use_sii=False`` and ``use_lii=False``) it is
        ``cat(BN(sequence), BN(projected))``. Use in ``eval()`` mode (BatchNorm running
        statistics); the result for one clip does not depend on the other clips of the batch.
        """
        video = self._check_video(video)
        self._check_cameras(cameras, video.shape[0])
        tokens, projected = self._encode(video, cameras)
        sequence = tokens[:, :, 0].mean(dim=1)
        parts = [self.bn_sequence(sequence), self.bn_projected(projected.mean(dim=1))]
        if self.mii is not None:
            parts.append(self.bn_mii(self.mii(tokens).feature))
        return torch.cat(parts, dim=1)

    def memory_features(
        self, video: torch.Tensor, cameras: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, D + d) memory features of a set of clips: :meth:`memory_norm` of
        :meth:`clip_features` with the statistics of these B clips.

        This is exactly training's ``XReIDOutput.memory_feature`` for a batch (the clip
        BNNecks with batch statistics), in any mode and without touching the running
        statistics. To initialise prototypes, normalise every clip with the statistics of the
        whole training set instead (``memory_norm(raw, mean, var)``, as the trainer does; see
        ``docs/training.md``, "The memory feature").
        """
        return self.memory_norm(self.clip_features(video, cameras))

    def clip_features(
        self, video: torch.Tensor, cameras: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, D + d) = cat(sequence, projected): the clip's TAP [CLS] features before any
        BNNeck (raw encoder output; the input of :meth:`memory_norm`)."""
        video = self._check_video(video)
        self._check_cameras(cameras, video.shape[0])
        tokens, projected = self._encode(video, cameras)
        return torch.cat([tokens[:, :, 0].mean(dim=1), projected.mean(dim=1)], dim=1)

    def forward(
        self,
        video: torch.Tensor,
        modality: torch.Tensor | None = None,
        cameras: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> XReIDOutput | torch.Tensor:
        """Training: ``XReIDOutput``; eval: the inference embedding (see :meth:`embed`).

        Args:
            video: (B, T, 3, H, W) clips, visible and infrared mixed.
            modality: (B,) long, ``VISIBLE``/``INFRARED``; required for training with CII.
            cameras: (B,) long camera indices, or None.
            labels: (B,) identity labels; when given, the visible/infrared pairing is checked.
        """
        if not self.training:
            return self.embed(video, cameras)
        video = self._check_video(video)
        batch, frames = video.shape[:2]
        self._check_cameras(cameras, batch)
        if labels is not None:
            check_labels(labels, "labels", self.num_identities, length=batch)
        pairs = None
        if self.cii is not None:
            pairs = self._pair_indices(modality, labels, batch)

        tokens, projected = self._encode(video, cameras)
        cls = tokens[:, :, 0]  # (B, T, D)
        sequence = cls.mean(dim=1)
        projected_seq = projected.mean(dim=1)
        clip_feature = torch.cat([self.bn_sequence(sequence), self.bn_projected(projected_seq)], 1)

        mii_tokens = tokens.detach() if self.config.detach_mii else tokens
        mii = self.mii(mii_tokens) if self.mii is not None else None
        logits: tuple[torch.Tensor, ...] = (self.classifier_clip(clip_feature),)
        triplet_features: tuple[torch.Tensor, ...] = (sequence, projected_seq)
        if mii is not None:
            logits += (self.classifier_mii(self.bn_mii(mii.feature)),)
            triplet_features += (mii.feature,)

        frame_logits: tuple[torch.Tensor, ...] = ()
        if self.config.frame_logits:
            cls_f = cls.reshape(batch * frames, -1)
            proj_f = projected.reshape(batch * frames, -1)
            frame_logits = (
                self.classifier_clip_frame(
                    torch.cat([self.bn_sequence_frame(cls_f), self.bn_projected_frame(proj_f)], 1)
                ),
            )
            if mii is not None:
                # per-frame MII output: SII's (authors' code), LII's when SII is off
                per_frame = mii.short if mii.short is not None else mii.long
                assert per_frame is not None
                frame_logits += (
                    self.classifier_mii(self.bn_mii_frame(per_frame.reshape(batch * frames, -1))),
                )

        cmcl_pairs: tuple[tuple[torch.Tensor, torch.Tensor], ...] = ()
        extras: dict[str, torch.Tensor] = {}
        if self.cii is not None and pairs is not None:
            # without MII, CII's query is the clip's sequence feature (TAP of the [CLS] tokens)
            anchors = (
                [("sequence", mii_tokens[:, :, 0].mean(dim=1))] if mii is None
                else self._mii_anchors(mii)
            )
            cmcl_pairs, extras = self._cross_modal(anchors, mii_tokens[:, :, 1:], *pairs)

        return XReIDOutput(
            sequence=sequence,
            projected=projected_seq,
            memory_feature=clip_feature,
            triplet_features=triplet_features,
            logits=logits,
            frame_logits=frame_logits,
            cmcl_pairs=cmcl_pairs,
            mii=mii,
            extras=extras,
        )

    def forward_paired(
        self,
        visible: torch.Tensor,
        infrared: torch.Tensor,
        *,
        labels: torch.Tensor | None = None,
        visible_cameras: torch.Tensor | None = None,
        infrared_cameras: torch.Tensor | None = None,
    ) -> XReIDOutput:
        """Training forward on explicitly paired clips.

        ``visible[i]`` and ``infrared[i]`` (each (P, T, 3, H, W)) show identity ``labels[i]``
        ((P,) or None). The batch is laid out as ``[visible; infrared]`` (2P clips), so the
        output's rows 0..P-1 are the visible clips; loss labels are ``labels.repeat(2)``.
        """
        if not self.training:
            raise RuntimeError("forward_paired is a training forward; call model.train() first")
        visible = self._check_video(visible, "visible")
        infrared = self._check_video(infrared, "infrared")
        if visible.shape != infrared.shape:
            raise ValueError(
                f"infrared: expected the shape of the paired visible clips "
                f"{shape_str(visible)} (same P, T, 3, H, W), got {shape_str(infrared)}"
            )
        p = visible.shape[0]
        modality = torch.cat(
            [torch.full((p,), VISIBLE, dtype=torch.long), torch.full((p,), INFRARED,
                                                                     dtype=torch.long)]
        ).to(visible.device)
        cams = None
        if (visible_cameras is None) != (infrared_cameras is None):
            raise ValueError(
                "visible_cameras/infrared_cameras: expected both or neither, got only one"
            )
        if visible_cameras is not None and infrared_cameras is not None:
            cams = torch.cat([visible_cameras, infrared_cameras])
        both_labels = None if labels is None else torch.cat([labels, labels])
        out = self(torch.cat([visible, infrared]), modality, cams, both_labels)
        assert isinstance(out, XReIDOutput)
        return out

    # ----------------------------------------------------------------------- cross-modal
    @staticmethod
    def _pair_indices(
        modality: torch.Tensor | None, labels: torch.Tensor | None, batch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices (vis, ir) pairing the i-th visible clip with the i-th infrared clip."""
        if modality is None:
            raise ValueError(
                "modality: expected a (B,) tensor of VISIBLE/INFRARED codes for training with "
                "CII (use_cii=True), got None"
            )
        check_tensor(modality, "modality", ndim=1, dims={0: batch}, layout="(B,)")
        if bool(((modality != VISIBLE) & (modality != INFRARED)).any()):
            raise ValueError(
                f"modality: expected values in {{{VISIBLE}, {INFRARED}}}, got "
                f"{sorted(set(modality.tolist()))}"
            )
        vis = torch.nonzero(modality == VISIBLE).flatten()
        ir = torch.nonzero(modality == INFRARED).flatten()
        if vis.numel() != ir.numel() or vis.numel() == 0:
            raise ValueError(
                "modality: CII pairs the i-th visible clip with the i-th infrared clip, so a "
                f"training batch needs equally many of each (at least one), got "
                f"{vis.numel()} visible and {ir.numel()} infrared"
            )
        if labels is not None and not torch.equal(labels[vis], labels[ir]):
            raise ValueError(
                "labels: the i-th visible and i-th infrared clips must share the identity, got "
                f"visible {labels[vis].tolist()} vs infrared {labels[ir].tolist()}"
            )
        return vis, ir

    def _mii_anchors(self, mii: Any) -> list[tuple[str, torch.Tensor]]:
        """The (name, O-bar (B, D)) sequence feature of every MII branch that is on and
        selected by ``cmcl_branches``."""
        chosen = self.config.cmcl_branches
        branches = []
        if mii.short is not None and chosen in ("both", "sii"):
            branches.append(("short", mii.short.mean(dim=1)))
        if mii.long is not None and chosen in ("both", "lii"):
            branches.append(("long", mii.long.mean(dim=1)))
        return branches

    def _cross_modal(
        self,
        branches: list[tuple[str, torch.Tensor]],
        patches: torch.Tensor,
        vis: torch.Tensor,
        ir: torch.Tensor,
    ) -> tuple[tuple[tuple[torch.Tensor, torch.Tensor], ...], dict[str, torch.Tensor]]:
        """CII in the selected directions for every selected branch, in one batched call.

        For a branch with sequence feature O-bar (B, D) (an MII branch, or the clip's
        sequence feature without MII): the visible clips' O-bar queries the paired infrared
        patches (``"v2i"``) and the infrared O-bar the visible patches (``"i2v"``); CMCL
        compares O-bar with the CII output. Pairs are ordered branch-major, v2i first.
        """
        assert self.cii is not None
        directions = self.config.cmcl_directions
        queries, keys, names = [], [], []
        for name, anchor in branches:
            if directions in ("both", "v2i"):
                queries.append(anchor[vis])
                keys.append(patches[ir])
                names.append(f"cii_{name}_v2i")
            if directions in ("both", "i2v"):
                queries.append(anchor[ir])
                keys.append(patches[vis])
                names.append(f"cii_{name}_i2v")
        out = self.cii(torch.cat(queries, 0), torch.cat(keys, 0))
        chunks = out.split(vis.numel(), dim=0)
        side = self.config.cmcl_stop_gradient
        pairs = tuple(
            (q.detach() if side == "anchor" else q, o.detach() if side == "interaction" else o)
            for q, o in zip(queries, chunks)
        )
        return pairs, dict(zip(names, chunks))

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"num_identities={self.num_identities}, embedding_dim={self.embedding_dim}, "
            f"use_sii={c.use_sii}, sii_stride={c.sii_stride}, sii_depth={c.sii_depth}, "
            f"use_lii={c.use_lii}, lii_stride={c.lii_stride}, use_cii={c.use_cii}, "
            f"use_memory={c.use_memory}, detach_mii={c.detach_mii}, "
            f"frame_logits={c.frame_logits}"
        )


    # ------------------------------------------------------------------ trainer hooks
    def compile_targets(self) -> list[nn.Module]:
        """The submodules worth ``torch.compile``-ing, each compiled in place with
        ``module.compile()``: the backbone and, when built, the MII branch (the rest is a few
        BatchNorms and linear layers)."""
        return [self.backbone] + ([self.mii] if self.mii is not None else [])

    def no_weight_decay(self) -> set[str]:
        """Names (as in ``named_parameters``) that optimisers usually exclude from weight
        decay: the backbone's [CLS] token, positional and camera embeddings. Used by
        :func:`xreid.engine.build_optimizer` only with ``exclude_no_weight_decay=True`` (the
        authors' code decays every parameter, the default)."""
        return {f"backbone.{n}" for n in self.backbone.no_weight_decay()}

    def projected_features(
        self, video: torch.Tensor, cameras: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, d): the temporal average of the backbone's projected [CLS] feature (the second
        half of :meth:`clip_features`; the clip feature the textual prompts are aligned to)."""
        video = self._check_video(video)
        self._check_cameras(cameras, video.shape[0])
        return self._encode(video, cameras)[1].mean(dim=1)

    # ------------------------------------------------------------------ optimiser hook
    def parameter_roles(self) -> dict[str, frozenset[str]]:
        """The learning-rate roles of every parameter, by name (the optimiser's hook).

        ``"classifier"``: the identity classifiers. ``"head"``: everything of the MII branch
        (the MII blocks, its BNNecks and its classifier) and CII, the parts the authors' code
        trains at a larger rate (its ``TSM`` parameters). Roles compound in
        :func:`xreid.engine.build_optimizer`: the MII classifier is both. The backbone and the
        clip BNNecks have no role. Declared here, by module, so that renaming an attribute
        cannot silently change a learning rate.
        """
        classifier = [getattr(self, n, None)
                      for n in ("classifier_clip", "classifier_mii", "classifier_clip_frame")]
        head = [getattr(self, n, None)
                for n in ("mii", "cii", "bn_mii", "bn_mii_frame", "classifier_mii")]
        role_of: dict[int, set[str]] = {}
        for role, modules in (("classifier", classifier), ("head", head)):
            for module in modules:
                if module is None:
                    continue
                for p in module.parameters():
                    role_of.setdefault(id(p), set()).add(role)
        return {name: frozenset(role_of.get(id(p), ())) for name, p in self.named_parameters()}

    # ------------------------------------------------------------------ the memory feature
    def memory_norm(
        self,
        clip_features: torch.Tensor,
        mean: torch.Tensor | None = None,
        var: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, D + d) -> (B, D + d): ``cat(BN_seq, BN_proj)`` of raw clip features.

        The clip BNNecks' affine parameters with the statistics ``mean``/``var`` (D + d,) —
        by default those of ``clip_features`` itself (biased variance, as BatchNorm in
        training) — never the running statistics, which are left untouched. With the default
        this is the memory feature of a training batch; with the training set's statistics
        it is the same feature for initialising the prototypes.
        """
        if mean is None or var is None:
            x = clip_features.float()
            mean = x.mean(0)
            var = x.var(0, unbiased=False)
        d = self.embed_dim
        parts = []
        for bn, sl in ((self.bn_sequence, slice(0, d)), (self.bn_projected, slice(d, None))):
            parts.append(F.batch_norm(clip_features[:, sl], mean[sl].to(clip_features.dtype),
                                      var[sl].to(clip_features.dtype), bn.weight, bn.bias,
                                      training=False, eps=bn.eps))
        return torch.cat(parts, dim=1)
