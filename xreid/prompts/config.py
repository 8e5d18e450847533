"""The ``prompts`` section of a training configuration: CLIP-ReID-style textual prompts.

Table 4's "Textual Prompts" row: stage 1 learns one prompt per identity and modality against
the frozen image features, stage 2 trains the image encoder with the prompts' text features as
an extra identity classifier (:mod:`xreid.engine.prompt_stages`). Validated against this
package's constants (:data:`STAGE1_I2T`, :data:`SIMILARITIES`).
"""

from __future__ import annotations

from dataclasses import dataclass

from xreid._config import check_choice, check_field_types, check_range

__all__ = ["SIMILARITIES", "STAGE1_I2T", "PromptConfig"]

STAGE1_I2T: tuple[str, ...] = ("batch", "all")
"""Stage-1 image-to-text candidates: the batch's identities (CLIP-ReID) or every identity."""

SIMILARITIES: tuple[str, ...] = ("dot", "cosine")
"""Image-text similarity: dot product (CLIP-ReID) or cosine times CLIP's logit scale."""


@dataclass
class PromptConfig:
    """CLIP-ReID's two stages with per-identity, per-modality text prompts.

    Attributes:
        enabled: run the two stages (stage 1 learns the prompts, then the training epochs).
        text_weights: CLIP checkpoint with the text tower (default: the model's weights).
        stage1_epochs: stage-1 (prompt learning) epochs; CLIP-ReID: 120.
        stage1_lr: stage-1 Adam LR (warm-up 5 epochs from 1e-5, cosine); CLIP-ReID: 3.5e-4.
        stage1_batch_size: stage-1 batch of cached clip features; CLIP-ReID: 64.
        stage1_i2t: stage-1 image-to-text candidates: batch (CLIP-ReID) | all.
        similarity: image-text similarity: dot (CLIP-ReID) | cosine (x logit scale).
        i2t_weight: weight of the stage-2 image-to-text cross-entropy.
        template: prompt text; the X words are learned, {modality} becomes visible/infrared
            (the paper: 'A {modality} video of a X X X X person.').
    """

    enabled: bool = False
    text_weights: str | None = None
    stage1_epochs: int = 120
    stage1_lr: float = 3.5e-4
    stage1_batch_size: int = 64
    stage1_i2t: str = "batch"
    similarity: str = "dot"
    i2t_weight: float = 1.0
    template: str = "A photo of a X X X X person."

    def validate(self) -> None:
        """``ValueError`` naming the first invalid option."""
        check_field_types(self)
        if self.text_weights is not None and not self.text_weights:
            raise ValueError("text_weights: expected a file path or None, got ''")
        check_range("stage1_epochs", self.stage1_epochs, 0)
        check_range("stage1_lr", self.stage1_lr, 0.0, lo_open=True)
        check_range("stage1_batch_size", self.stage1_batch_size, 1)
        check_choice("stage1_i2t", self.stage1_i2t, STAGE1_I2T)
        check_choice("similarity", self.similarity, SIMILARITIES)
        check_range("i2t_weight", self.i2t_weight, 0.0)
        words = self.template.split()
        if "X" not in words and "X." not in words:
            raise ValueError(f"template: expected learned words 'X' (e.g. 'A photo of a "
                             f"X X X X person.'), got {self.template!r}")
