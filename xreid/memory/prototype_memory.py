"""Cross-modality Prototype Collaboration (CPC) memory: paper Eqs. 1-4.

Two prototype memories, ``visible`` (M^vis) and ``infrared`` (M^ir), each (C, d) float32
with unit-norm rows, one row per training identity.

- :meth:`CrossModalPrototypeMemory.initialize` ("Memory Initialization"): each row is the
  L2-normalised mean of that identity's features in that modality.
- :meth:`CrossModalPrototypeMemory.update` ("Cross-modality Update", Eqs. 1-2): for every
  identity y in the batch, ``visible[y]`` takes the **infrared** sample of y with the lowest
  cosine similarity to ``visible[y]`` (Eq. 2) and becomes
  ``normalize(mu * visible[y] + (1 - mu) * b)`` (Eq. 1); ``infrared[y]`` symmetrically takes
  the least similar **visible** sample. ``hard_selection="any"`` picks the hardest sample of
  either modality, which is what the authors' released code does (``CM_Hard``);
  ``hard_selection="same_modality"`` updates ``visible[y]`` with the hardest *visible* sample
  and ``infrared[y]`` with the hardest *infrared* one (the usual per-modality memory of PCL,
  the paper's "Visual Memories" baseline, Table 4).
- :meth:`CrossModalPrototypeMemory.forward`: the CPCL loss (Eqs. 3-4) against the current
  prototypes; with ``collaboration=False`` each sample is classified only against the
  prototypes of its own modality (Table 4's rows without "collaboration").

The update is a plain ``no_grad`` method, called explicitly (normally right after
``loss.backward()``; calling it before ``backward`` is also correct, see :meth:`forward`),
instead of the authors' side effect inside ``autograd.Function.backward``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from xreid._torch_utils import is_compiling
from xreid._validation import (
    check_floating,
    check_integer_dtype,
    check_same_length,
    check_tensor,
)
from xreid.constants import INFRARED, VISIBLE
from xreid.distributed import all_gather_variable, get_world_size, is_distributed
from xreid.losses.cpcl import check_cpcl_form, prototype_collaboration_loss

__all__ = ["CPCMemory", "CrossModalPrototypeMemory"]

HardSelection = Literal["cross_modal", "same_modality", "any"]
HARD_SELECTIONS: tuple[str, ...] = ("cross_modal", "same_modality", "any")
_BUFFERS = ("visible", "infrared")


def _select_hard(
    memories: tuple[torch.Tensor, torch.Tensor],
    x: torch.Tensor,
    norms: torch.Tensor,
    labels: torch.Tensor,
    candidates: torch.Tensor | None,
    workspace: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eq. 2 for both memories at once, vectorised (no loop, no host synchronisation).

    The two memories are handled as one stacked (2C, d) table: bin ``y`` is ``visible[y]``
    and bin ``C + y`` is ``infrared[y]``; the batch is stacked the same way (entry ``i`` is
    sample i against the visible memory, entry ``N + i`` sample i against the infrared one).

    Args:
        memories: (visible, infrared), each (C, d), unit-norm rows.
        x: (N, d) raw float32 features; ``norms``: (N, 1) their L2 norms (clamped > 0).
        labels: (N,) long in [0, C).
        candidates: (2N,) bool, which stacked entries may update their bin (None: all).
        workspace: optional (N, d) float32 scratch tensor (overwritten).

    Returns:
        ``first`` (2C + 1,) long: for each bin, the stacked entry of its identity with the
        lowest cosine similarity to the bin's prototype (ties: the first in batch order, as
        ``np.argmin``), or 2N when the bin has no candidate (bin 2C collects the
        non-candidates). One scatter-min finds the minimum, a second one the first entry
        that reaches it.
    """
    c, n = memories[0].shape[0], x.shape[0]
    # cos(b, M[y]) = (b . M[y]) / |b|, prototype rows being unit norm. The (N, d) products
    # go through one reused workspace: no large temporary is allocated per call.
    if workspace is None or workspace.shape != x.shape:
        workspace = x.new_empty(x.shape)
    dots = x.new_empty(2, n)
    for i, mem in enumerate(memories):
        torch.index_select(mem, 0, labels, out=workspace)
        torch.sum(workspace.mul_(x), dim=1, out=dots[i])
    sim = dots.div_(norms.view(1, n)).view(2 * n)
    key = torch.cat([labels, labels + c])
    if candidates is not None:
        key = torch.where(candidates, key, 2 * c)
    best = sim.new_full((2 * c + 1,), math.inf).scatter_reduce_(0, key, sim, "amin")
    index = torch.arange(2 * n, device=x.device)
    is_best = sim == best.index_select(0, key)
    if candidates is not None:
        is_best = is_best & candidates
    return index.new_full((2 * c + 1,), 2 * n).scatter_reduce_(
        0, key, torch.where(is_best, index, 2 * n), "amin"
    )


def _momentum_write(
    memories: tuple[torch.Tensor, torch.Tensor],
    x: torch.Tensor,
    norms: torch.Tensor,
    labels: torch.Tensor,
    first: torch.Tensor,
    momentum: float,
    *,
    exact_rows: bool,
) -> None:
    """Eq. 1 in place: ``M[y] = normalize(mu * M[y] + (1 - mu) * x[j] / |x[j]|)``.

    ``x`` (N, d) raw features, ``norms`` (N, 1) clamped norms, ``first`` from
    :func:`_select_hard` (2N = no update for that bin). ``x / norms`` and the final
    normalisation are spelled exactly as ``F.normalize``, so rows match it bit for bit.

    ``exact_rows=True`` writes each updated identity exactly once: the updated bins are
    found with ``nonzero`` (free on CPU, a host synchronisation on CUDA), then one
    ``index_copy_`` with unique indices per memory. ``exact_rows=False`` is the
    synchronisation-free form for accelerators: every sample writes its identity's row, and
    all samples of one identity write bit-identical values (the new row, or the old row when
    the identity has no candidate), so the result does not depend on the write order. Both
    forms give bit-identical memories.
    """
    c, n = memories[0].shape[0], x.shape[0]
    if exact_rows:
        bins = (first[: 2 * c] < 2 * n).nonzero().squeeze(1)  # sorted: visible bins first
        k = int((bins < c).sum())
        sample = torch.remainder(first.index_select(0, bins), n)
        rows = (bins[:k], bins[k:] - c)
        # in place on fresh (P, d) tensors: same values as the out-of-place expression
        new = torch.cat([m.index_select(0, r) for m, r in zip(memories, rows)]).mul_(momentum)
        hard = x.index_select(0, sample).div_(norms.index_select(0, sample))
        new.add_(hard.mul_(1.0 - momentum))
        new.div_(torch.linalg.vector_norm(new, dim=1, keepdim=True).clamp_min_(1e-12))
        memories[0].index_copy_(0, rows[0], new[:k])
        memories[1].index_copy_(0, rows[1], new[k:])
        return
    for mem, bins in zip(memories, (labels, labels + c)):
        source = first.index_select(0, bins)  # (N,) stacked entry chosen for each sample
        has = (source < 2 * n).unsqueeze(1)
        sample = torch.remainder(source, n)
        old = mem.index_select(0, labels)
        hard = x.index_select(0, sample) / norms.index_select(0, sample)
        new = old * momentum + (1.0 - momentum) * hard
        new = new / torch.linalg.vector_norm(new, dim=1, keepdim=True).clamp_min(1e-12)
        mem.index_put_((labels,), torch.where(has, new, old))


def _own_modality_loss(
    features: torch.Tensor,
    labels: torch.Tensor,
    modality: torch.Tensor,
    visible: torch.Tensor,
    infrared: torch.Tensor,
    temperature: float,
    form: str = "memory",
) -> torch.Tensor:
    """Each sample against its own modality's prototypes only (no cross-modal collaboration).

    ``sum over m in {visible, infrared} of mean_{i: modality_i = m} CE(cos(f_i, M^m) / tau,
    y_i)``, float32, vectorised (no host synchronisation). With ``form="paper"`` the logits
    are the cosines without ``tau`` and the softmax runs over the batch's identities only
    (as :func:`~xreid.losses.cpcl.prototype_collaboration_loss`). Shapes: features (B, d),
    labels and modality (B,), prototypes (C, d) -> scalar.
    """
    if features.shape[0] == 0:
        return features.float().sum() * 0.0
    with torch.autocast(device_type=features.device.type, enabled=False):
        f = F.normalize(features.float(), dim=1)
        is_ir = (modality == INFRARED).unsqueeze(1)
        logits = torch.where(
            is_ir,
            f @ F.normalize(infrared.float(), dim=1).t(),
            f @ F.normalize(visible.float(), dim=1).t(),
        )
        if form == "paper":
            present = torch.zeros(logits.shape[1], dtype=torch.bool, device=f.device)
            present = present.index_fill(0, labels.long(), True)
            logits = logits + torch.where(present, 0.0, float("-inf"))
        else:
            logits = logits / temperature
        ce = F.cross_entropy(logits, labels.long(), reduction="none")
        loss = ce.new_zeros(())
        for code in (VISIBLE, INFRARED):
            mask = (modality == code).to(ce.dtype)
            loss = loss + (ce * mask).sum() / mask.sum().clamp_min(1.0)
    return loss


class CrossModalPrototypeMemory(nn.Module):
    """Two momentum prototype memories with cross-modal hard-sample updates (Eqs. 1-4).

    Buffers ``visible`` and ``infrared``: (C, d), float32 always (also after
    ``model.half()`` / ``.to(torch.bfloat16)`` and under autocast), unit-norm rows once
    initialised (zeros before). Both are persistent (saved in ``state_dict``).

    Args:
        num_identities: C, the number of training identities (labels are 0..C-1).
        dim: d, the feature size.
        momentum: mu of Eq. 1 (paper 0.2; the authors' code uses 0.1), in [0, 1).
        temperature: tau of the CPCL softmax (0.05).
        hard_selection: ``"cross_modal"`` (Eq. 2: visible prototypes are updated only by
            infrared samples and vice versa), ``"same_modality"`` (visible prototypes by
            visible samples, infrared by infrared: two independent per-modality memories,
            as PCL) or ``"any"`` (the hardest sample of either modality, for both memories,
            as the authors' ``CM_Hard``).
        collaboration: ``True`` (Eqs. 3-4): every sample is classified against both
            memories. ``False``: each sample only against the memory of its own modality
            (then ``forward`` needs ``modality``); see :meth:`forward`.
        validate: check input *values* (labels in [0, C), modality in {0, 1}, finite
            features) with **one** host synchronisation per call and raise ``ValueError``.
            With ``validate=False`` nothing synchronises (fit for CUDA graphs / overlapped
            steps): ``update`` then silently **ignores** invalid samples (they never touch
            the memory) and ``forward`` leaves out-of-range labels to ``cross_entropy``.
            Shapes, dtypes and devices are always checked (metadata only). Mutable
            attribute.
        form: the CPCL form (:data:`xreid.losses.cpcl.CPCL_FORMS`): ``"memory"`` (cosine /
            tau over all C identities, the authors' code, default) or ``"paper"`` (Eqs. 3-4
            as printed: cosine without tau over the batch's identities).
        shared: ``initialize`` gives both memories the same prototypes, each identity's
            centroid over **both** modalities (PCL's single memory). With
            ``hard_selection="any"`` every update then writes the same row into both, so they
            stay identical: one memory, read by ``forward`` as either modality's. ``False``
            (default): per-modality centroids (the paper's "Memory Initialization").

    Attribute ``force_sync_free`` (default ``False``): on CPU, ``update`` writes the rows
    exactly (one host synchronisation); on other devices, or when this is set, it uses the
    synchronisation-free write path. Both paths give bitwise-equal prototypes; the switch
    exists so that this equality can be checked on CPU.

    Methods: ``initialize(features (M, d), labels (M,), modality (M,))``,
    ``update(features (B, d), labels (B,), modality (B,))``,
    ``forward(features (B, d), labels (B,), modality (B,) | None) -> scalar`` CPCL loss.

    Distributed (``torch.distributed`` initialised): ``initialize`` all-reduces the
    per-identity sums and counts (so rank shards or full copies both work) and ``update``
    all-gathers features, labels and modality (batch sizes may differ per rank; one host
    synchronisation for the sizes) and every rank applies the same update to the same
    global batch, so prototypes stay bit-identical across ranks without a broadcast. Keep the
    buffers out of DDP's own buffer broadcast with
    :func:`xreid.memory.ignore_memory_buffers_in_ddp` (or keep the memory outside the
    DDP-wrapped module). All ranks must call ``initialize`` / ``update`` together.
    """

    visible: torch.Tensor
    infrared: torch.Tensor

    def __init__(
        self,
        num_identities: int,
        dim: int,
        *,
        momentum: float = 0.2,
        temperature: float = 0.05,
        hard_selection: HardSelection = "cross_modal",
        collaboration: bool = True,
        validate: bool = True,
        form: str = "memory",
        shared: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(num_identities, int) or num_identities < 1:
            raise ValueError(f"num_identities: expected an int >= 1, got {num_identities!r}")
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim: expected an int >= 1, got {dim!r}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum: expected a float in [0, 1), got {momentum!r}")
        if not temperature > 0:
            raise ValueError(f"temperature: expected a positive float, got {temperature!r}")
        if hard_selection not in HARD_SELECTIONS:
            raise ValueError(
                f"hard_selection: expected one of {HARD_SELECTIONS}, got {hard_selection!r}"
            )
        if not isinstance(collaboration, bool):
            raise ValueError(f"collaboration: expected a bool, got {collaboration!r}")
        self.num_identities = num_identities
        self.dim = dim
        self.momentum = float(momentum)
        self.temperature = float(temperature)
        self.hard_selection: HardSelection = hard_selection
        self.collaboration = collaboration
        self.form = check_cpcl_form(form)
        if not isinstance(shared, bool):
            raise ValueError(f"shared: expected a bool, got {shared!r}")
        self.shared = shared
        self.validate = bool(validate)
        self.is_initialized = False
        self._workspace: torch.Tensor | None = None
        # use the accelerator (synchronisation-free) write path on CPU too; bitwise equal
        # to the default CPU path (kept as a switch so that the equality can be tested)
        self.force_sync_free = False
        self.register_buffer("visible", torch.zeros(num_identities, dim))
        self.register_buffer("infrared", torch.zeros(num_identities, dim))

    # ------------------------------------------------------------------ checks
    def _check_batch(
        self, features: object, labels: object, modality: object | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Shapes, dtypes and devices (metadata only: no host synchronisation)."""
        f = check_tensor(features, "features", ndim=2, layout="(B, d)")
        check_floating(f, "features")
        if f.shape[1] != self.dim:
            raise ValueError(
                f"features: expected feature dim {self.dim} (B, d), got shape "
                f"({f.shape[0]}, {f.shape[1]})"
            )
        device = self.visible.device
        if f.device != device:
            raise ValueError(f"features: expected a tensor on {device}, got {f.device}")
        y = check_tensor(labels, "labels", ndim=1, layout="(B,)")
        check_integer_dtype(y, "labels")
        check_same_length("features", f, "labels", y)
        if y.device != device:
            raise ValueError(f"labels: expected a tensor on {device}, got {y.device}")
        m = None
        if modality is not None:
            m = check_tensor(modality, "modality", ndim=1, layout="(B,)")
            check_integer_dtype(m, "modality")
            check_same_length("features", f, "modality", m)
            if m.device != device:
                raise ValueError(f"modality: expected a tensor on {device}, got {m.device}")
        return f, y, m

    def _check_values(
        self, features: torch.Tensor | None, labels: torch.Tensor, modality: torch.Tensor | None
    ) -> None:
        """Value checks with one host synchronisation (details only on the error path)."""
        if labels.numel() == 0 or is_compiling():
            return
        c = self.num_identities
        flags = [((labels < 0) | (labels >= c)).any()]
        if modality is not None:
            flags.append(((modality != VISIBLE) & (modality != INFRARED)).any())
        if features is not None:
            flags.append(~torch.isfinite(features).all())
        bad = torch.stack(flags).tolist()
        if bad[0]:
            lo, hi = int(labels.min()), int(labels.max())
            raise ValueError(f"labels: expected values in [0, {c}), got values in [{lo}, {hi}]")
        if modality is not None and bad[1]:
            values = sorted(set(modality.unique().tolist()) - {VISIBLE, INFRARED})
            raise ValueError(
                f"modality: expected values in {{{VISIBLE} (visible), {INFRARED} (infrared)}}, "
                f"got {values}"
            )
        if features is not None and bad[-1]:
            rows = (~torch.isfinite(features).all(dim=1)).nonzero().squeeze(1)[:5].tolist()
            raise ValueError(f"features: expected finite values, got NaN or inf in rows {rows}")

    # ------------------------------------------------------------------ state
    @torch.no_grad()
    def initialize(
        self, features: torch.Tensor, labels: torch.Tensor, modality: torch.Tensor
    ) -> None:
        """Memory initialisation: per-identity, per-modality mean, then L2 normalisation.

        With ``shared=True`` the mean runs over both modalities and both memories get it.

        ``visible[y] = normalize(mean{features[i] : labels[i] == y, modality[i] == 0})``,
        ``infrared[y]`` likewise with modality 1 (the authors average the raw features and
        normalise the mean). An identity seen in only one modality takes the other
        modality's prototype, with a warning; an identity seen in neither raises
        ``ValueError``. Overwrites both memories (callable once, as in the paper, or every
        epoch, as in the authors' code).

        Args:
            features: (M, d) floating, any dtype (accumulated in float32).
            labels: (M,) integer in [0, C).
            modality: (M,) integer in {0, 1}.

        Values are always validated here (a one-off call). Under ``torch.distributed`` the
        per-identity sums and counts are all-reduced, then rank 0's prototypes are broadcast.
        """
        f, y, m = self._check_batch(features, labels, modality)
        assert m is not None
        distributed = is_distributed() and get_world_size() > 1
        if f.shape[0] == 0 and not distributed:  # an empty shard is fine under DDP
            raise ValueError("features: expected at least one sample to initialise from, got 0")
        error: ValueError | None = None
        try:
            self._check_values(f, y, m)
        except ValueError as err:
            error = err
        if distributed:  # one rank's bad input must stop every rank, not deadlock them
            flag = torch.tensor([float(error is not None)], device=f.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            if error is None and bool(flag.item()):
                error = ValueError("features: another rank passed invalid values to "
                                   "initialize (see its error)")
        if error is not None:
            raise error
        c = self.num_identities
        x = f.detach().float()
        y = y.long()
        # (M,) row in a stacked (2C, d) table; a shared memory puts every sample in the first C
        slot = y + c * (m.long() == INFRARED).long() * int(not self.shared)
        sums = x.new_zeros(2 * c, self.dim).index_add_(0, slot, x)
        counts = torch.bincount(slot, minlength=2 * c).to(x.dtype)
        if distributed:
            dist.all_reduce(sums)
            dist.all_reduce(counts)
        means = F.normalize(sums / counts.clamp(min=1).unsqueeze(1), dim=1)
        vis, ir = means[:c], means[c:]
        has_vis, has_ir = counts[:c] > 0, counts[c:] > 0
        missing_both = (~has_vis & ~has_ir).nonzero().squeeze(1).tolist()
        if missing_both:
            raise ValueError(
                f"labels: expected every identity in [0, {c}) to have at least one sample, "
                f"got {len(missing_both)} without any (e.g. {missing_both[:10]})"
            )
        only_ir = (~has_vis).nonzero().squeeze(1).tolist()
        only_vis = (~has_ir).nonzero().squeeze(1).tolist()
        if (only_ir or only_vis) and not self.shared:
            warnings.warn(
                f"CrossModalPrototypeMemory.initialize: {len(only_vis)} identities have no "
                f"infrared sample (e.g. {only_vis[:10]}) and {len(only_ir)} no visible sample "
                f"(e.g. {only_ir[:10]}); their missing prototype copies the other modality's.",
                UserWarning,
                stacklevel=2,
            )
        new_vis = torch.where(has_vis.unsqueeze(1), vis, ir)
        new_ir = torch.where(has_ir.unsqueeze(1), ir, vis)
        self.visible.copy_(new_vis)
        self.infrared.copy_(new_ir)
        if distributed:
            dist.broadcast(self.visible, src=0)
            dist.broadcast(self.infrared, src=0)
        self.is_initialized = True

    @torch.no_grad()
    def update(
        self, features: torch.Tensor, labels: torch.Tensor, modality: torch.Tensor
    ) -> None:
        """Cross-modality momentum update, Eqs. 1-2 (vectorised, in place, no gradient).

        Features are detached, cast to float32 and L2-normalised. For every identity y in
        the (global) batch, each memory row takes the candidate sample of y with the lowest
        cosine similarity to it (ties: the first in batch order) and becomes
        ``normalize(mu * row + (1 - mu) * sample)``. Candidates for ``visible`` are the
        infrared samples and for ``infrared`` the visible samples (``"cross_modal"``), the
        visible samples for ``visible`` and the infrared ones for ``infrared``
        (``"same_modality"``), or all samples (``"any"``). Identities absent from the batch,
        or without a candidate, keep their row bit-for-bit. Each identity is updated once per
        call (as ``CM_Hard``).

        Args:
            features: (B, d) floating (any dtype; autocast is ignored).
            labels: (B,) integer in [0, C).
            modality: (B,) integer, 0 = visible, 1 = infrared.

        An empty batch (B = 0) is a no-op (under ``torch.distributed``, after taking part in
        the gather). Bad values raise ``ValueError`` when ``validate`` is set (checked after
        the distributed gather, so every rank raises together), otherwise the offending
        samples are ignored. Cost: O(B d + C) work, no loop over samples or identities; no
        host synchronisation on accelerators with ``validate=False`` and one process.
        """
        f, y, m = self._check_batch(features, labels, modality)
        assert m is not None
        if not self.is_initialized and not is_compiling():
            warnings.warn(
                "CrossModalPrototypeMemory.update called before initialize(): rows are "
                "written from single samples into zero prototypes (use xreid.build_memory or "
                "initialize() first).",
                UserWarning,
                stacklevel=2,
            )
        # inside no_grad: nothing below records a graph or writes to the inputs
        x, y, m = f.float().contiguous(), y.long(), m.long()
        if is_distributed() and get_world_size() > 1:
            x, y, m = all_gather_variable(x, y, m)
        if x.shape[0] == 0:
            return
        # no matmul below, so autocast cannot change any dtype: everything stays float32
        # the denominators of F.normalize(x, dim=1); they double as the finiteness check
        norms = torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(1e-12)
        valid: torch.Tensor | None = None
        if self.validate:
            self._check_update_values(norms, y, m)
        else:
            c = self.num_identities
            valid = (y >= 0) & (y < c) & ((m == VISIBLE) | (m == INFRARED))
            valid = valid & torch.isfinite(norms.squeeze(1))
            # invalid samples are never candidates, so their (possibly non-finite) rows
            # are never read back; only their labels must index safely
            y = torch.where(valid, y, 0)
        candidates: torch.Tensor | None = None
        if self.hard_selection == "cross_modal":
            # visible prototypes take infrared samples, infrared prototypes visible ones
            candidates = torch.cat([m == INFRARED, m == VISIBLE])
        elif self.hard_selection == "same_modality":
            # two independent memories: each takes only samples of its own modality
            candidates = torch.cat([m == VISIBLE, m == INFRARED])
        if valid is not None:
            both = torch.cat([valid, valid])
            candidates = both if candidates is None else candidates & both
        memories = (self.visible, self.infrared)
        first = _select_hard(memories, x, norms, y, candidates, self._scratch(x))
        exact = x.device.type == "cpu" and not self.force_sync_free
        _momentum_write(memories, x, norms, y, first, self.momentum, exact_rows=exact)

    def _scratch(self, x: torch.Tensor) -> torch.Tensor:
        """A reused (N, d) float32 workspace for the similarity products (not state)."""
        ws = self._workspace
        n = x.shape[0]
        if ws is None or ws.shape[0] < n or ws.device != x.device:
            ws = self._workspace = x.new_empty(x.shape)
        return ws[:n]

    def _check_update_values(
        self, norms: torch.Tensor, labels: torch.Tensor, modality: torch.Tensor
    ) -> None:
        """Labels, modality and finiteness in one host synchronisation (cheap reductions).

        A row with NaN/inf has a non-finite norm, so the float64 sum of the norms is
        non-finite; rows whose squared norm overflows float32 are rejected too.
        """
        if is_compiling():
            return
        lims = torch.stack([*torch.aminmax(labels), *torch.aminmax(modality)]).double()
        summary = torch.cat([lims, norms.sum(dtype=torch.float64).view(1)]).tolist()
        y_lo, y_hi, m_lo, m_hi, norm_sum = summary
        if y_lo < 0 or y_hi >= self.num_identities or m_lo < VISIBLE or m_hi > INFRARED:
            self._check_values(None, labels, modality)
        if not math.isfinite(norm_sum):
            rows = (~torch.isfinite(norms.squeeze(1))).nonzero().squeeze(1)[:5].tolist()
            raise ValueError(
                f"features: expected finite values (with a finite norm), got NaN or inf in "
                f"rows {rows}"
            )

    def forward(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        modality: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """CPCL loss (Eqs. 3-4) of ``features`` (B, d) with ``labels`` (B,) -> scalar.

        ``collaboration=True`` (the paper): ``CE(cos(f, visible) / tau, y) +
        CE(cos(f, infrared) / tau, y)``, softmax over all C identities, each CE averaged over
        the batch; ``modality`` is optional (checked when given, otherwise unused).

        ``collaboration=False``: sample i is compared only with the C prototypes of its own
        modality ``modality[i]``: ``CE(cos(f_i, M^{m_i}) / tau, y_i)``. The CE is averaged
        over the visible samples and over the infrared samples separately and the two means
        are added (a modality absent from the batch adds 0), so a balanced batch gives a
        loss of the same scale as ``collaboration=True``. ``modality`` is required.

        Computed in float32. The loss graph holds normalised *copies* of the prototypes,
        never the buffers themselves, so :meth:`update` may run before or after
        ``loss.backward()``: the gradient always uses the prototypes as they were at
        ``forward`` time, and no autograd version-counter error is raised.
        """
        if modality is None and not self.collaboration:
            raise ValueError(
                "modality: expected a (B,) tensor of VISIBLE/INFRARED codes (the memory has "
                "collaboration=False, so each sample uses its own modality's prototypes), "
                "got None"
            )
        f, y, m = self._check_batch(features, labels, modality)
        if self.validate:
            self._check_values(None, y, m)
        if not self.is_initialized and not is_compiling():
            warnings.warn(
                "CrossModalPrototypeMemory.forward called before initialize(): the "
                "prototypes are still zeros (use xreid.build_memory or initialize()).",
                UserWarning,
                stacklevel=2,
            )
        if self.collaboration:
            return prototype_collaboration_loss(f, y, self.visible, self.infrared,
                                                self.temperature, self.form, validate=False)
        assert m is not None
        return _own_modality_loss(f, y, m, self.visible, self.infrared, self.temperature,
                                  self.form)

    # ------------------------------------------------------------------ plumbing
    def _apply(self, fn: Any, recurse: bool = True) -> CrossModalPrototypeMemory:
        # keep the prototypes float32 through .half() / .to(dtype) (device moves still apply)
        before = {name: self._buffers[name] for name in _BUFFERS}
        super()._apply(fn, recurse)
        for name, old in before.items():
            new = self._buffers[name]
            if new is not None and old is not None and new.dtype != torch.float32:
                self._buffers[name] = old.to(device=new.device, dtype=torch.float32)
        return self

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
            error_msgs,
        )
        if all(prefix + name in state_dict for name in _BUFFERS):
            self.is_initialized = True

    def extra_repr(self) -> str:
        return (
            f"num_identities={self.num_identities}, dim={self.dim}, momentum={self.momentum}, "
            f"temperature={self.temperature}, hard_selection={self.hard_selection!r}, "
            f"collaboration={self.collaboration}, form={self.form!r}, shared={self.shared}"
        )


CPCMemory = CrossModalPrototypeMemory
