"""Optimiser and learning-rate schedule of the reference training loop.

Adam with coupled L2 weight decay and per-parameter LR factors, as the authors' code
(``solver/make_optimizer_prompt.py``): biases x ``bias_lr_factor``; classifier weights x
``classifier_lr_factor``; the MII branch (blocks, BNNecks, classifier) and CII x
``head_lr_factor``; factors compound, so the MII classifier runs at x100 with the presets'
factors of 10, as in the authors' code. The roles come from the model
(``parameter_roles()``), never from name patterns. The
schedule is stepped once per epoch: linear warm-up from ``warmup_factor * lr`` over
``warmup_epochs``, then x ``gamma`` after each milestone epoch (1-based: with milestones
(30, 50), epochs 31-50 run at 0.1 lr and epochs 51+ at 0.01 lr).
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass

import torch
from torch import nn

from xreid._config import check_field_types, check_range, option

__all__ = ["OptimConfig", "build_optimizer", "build_scheduler", "lr_factor"]


@dataclass
class OptimConfig:
    """The ``optim`` section of a training configuration: Adam, warm-up and multi-step LR.

    Attributes:
        epochs: training epochs.
        iters_per_epoch: iterations per epoch (None: one pass of the identity sampler).
        lr: base learning rate (Adam).
        warmup_epochs: epochs of linear LR warm-up.
        warmup_factor: LR multiplier at the start of the warm-up, in (0, 1].
        milestones: 1-based epochs after which the LR is multiplied by gamma.
        gamma: LR multiplier at each milestone, in (0, 1].
        weight_decay: Adam (coupled L2) weight decay, on every parameter.
        bias_lr_factor: LR multiplier of biases.
        classifier_lr_factor: LR multiplier of the identity classifiers.
        head_lr_factor: LR multiplier of the MII and CII parameters.
        max_grad_norm: clip the gradient norm to this value (None: no clipping).
    """

    epochs: int = option(40, resumable=True)
    iters_per_epoch: int | None = 50
    lr: float = 1e-3
    warmup_epochs: int = 2
    warmup_factor: float = 0.1
    milestones: tuple[int, ...] = (32,)
    gamma: float = 0.1
    weight_decay: float = 1e-4
    bias_lr_factor: float = 1.0
    classifier_lr_factor: float = 10.0
    head_lr_factor: float = 1.0
    max_grad_norm: float | None = None

    def validate(self) -> None:
        """``ValueError`` naming the first invalid option."""
        check_field_types(self)
        check_range("epochs", self.epochs, 1)
        check_range("iters_per_epoch", self.iters_per_epoch, 1, allow_none=True)
        check_range("lr", self.lr, 0.0, lo_open=True)
        check_range("warmup_epochs", self.warmup_epochs, 0)
        check_range("warmup_factor", self.warmup_factor, 0.0, 1.0, lo_open=True)
        check_range("gamma", self.gamma, 0.0, 1.0, lo_open=True)
        check_range("weight_decay", self.weight_decay, 0.0)
        for name in ("bias_lr_factor", "classifier_lr_factor", "head_lr_factor"):
            check_range(name, getattr(self, name), 0.0)
        check_range("max_grad_norm", self.max_grad_norm, 0.0, lo_open=True, allow_none=True)
        ms = tuple(self.milestones)
        if any(m < 1 for m in ms) or any(b <= a for a, b in itertools.pairwise(ms)):
            raise ValueError(f"milestones: expected strictly increasing epochs >= 1, got "
                             f"{list(ms)}")


def build_optimizer(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float = 1e-4,
    bias_lr_factor: float = 1.0,
    classifier_lr_factor: float = 1.0,
    head_lr_factor: float = 1.0,
    exclude_no_weight_decay: bool = False,
) -> torch.optim.Adam:
    """Adam over the trainable parameters, one group per parameter (named in the group).

    The LR of a parameter is ``lr`` times ``bias_lr_factor`` if its name ends in ``bias``,
    times ``classifier_lr_factor`` and ``head_lr_factor`` for the roles ``"classifier"`` and
    ``"head"`` that the model declares with ``parameter_roles() -> {name: roles}``
    (:meth:`xreid.XReID.parameter_roles`); factors compound. A model without that hook only
    gets the bias factor, and asking for the other factors then raises ``ValueError``.

    ``exclude_no_weight_decay=True`` gives weight decay 0 to the parameters the model names
    with ``no_weight_decay() -> set of names`` (:meth:`xreid.XReID.no_weight_decay`: the
    [CLS] token and the positional and camera embeddings), as timm's optimiser factory
    does. The default decays every parameter, as the authors' code.
    """
    no_decay: set[str] = set()
    if exclude_no_weight_decay:
        no_decay_fn = getattr(model, "no_weight_decay", None)
        if not callable(no_decay_fn):
            raise ValueError(
                f"model: exclude_no_weight_decay=True needs the model to declare "
                f"no_weight_decay() -> set of names, got {type(model).__name__} without it"
            )
        no_decay = set(no_decay_fn())
    roles_fn = getattr(model, "parameter_roles", None)
    if callable(roles_fn):
        roles = roles_fn()
    else:
        if classifier_lr_factor != 1.0 or head_lr_factor != 1.0:
            raise ValueError(
                f"model: classifier_lr_factor / head_lr_factor need the model to declare "
                f"parameter_roles() -> {{name: roles}}, got {type(model).__name__} without it"
            )
        roles = {}
    groups = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        factor = 1.0
        if name.endswith("bias"):
            factor *= bias_lr_factor
        role = roles.get(name, frozenset())
        if "classifier" in role:
            factor *= classifier_lr_factor
        if "head" in role:
            factor *= head_lr_factor
        decay = 0.0 if name in no_decay else weight_decay
        groups.append({"params": [param], "lr": lr * factor, "weight_decay": decay,
                       "name": name})
    if not groups:
        raise ValueError("model: expected at least one trainable parameter, got none")
    return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)


def lr_factor(
    epoch: int,
    *,
    warmup_epochs: int,
    warmup_factor: float,
    milestones: tuple[int, ...],
    gamma: float,
) -> float:
    """LR multiplier for the 0-based ``epoch`` (epoch number ``epoch + 1``)."""
    factor = 1.0
    if epoch < warmup_epochs:
        alpha = epoch / warmup_epochs
        factor = warmup_factor * (1 - alpha) + alpha
    return factor * gamma ** bisect.bisect_right(sorted(milestones), epoch)


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    warmup_epochs: int,
    warmup_factor: float,
    milestones: tuple[int, ...],
    gamma: float,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-epoch ``LambdaLR`` implementing :func:`lr_factor`."""

    def fn(epoch: int) -> float:
        return lr_factor(epoch, warmup_epochs=warmup_epochs, warmup_factor=warmup_factor,
                         milestones=milestones, gamma=gamma)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
