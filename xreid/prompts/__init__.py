"""Textual prompts on CLIP's text tower (the "Textual Prompts" row of Table 4).

CLIP-ReID-style prompt learning (Li, Sun and Li 2023), made modality-specific as in Fig. 1(a):
a template such as ``"A photo of a X X X X person."`` whose ``X`` words are learnable vectors
per identity *and* per modality, encoded by CLIP's frozen text transformer.

- :mod:`xreid.prompts.text_tower`: open_clip's text transformer, built at any size or loaded
  offline from an OpenAI / open_clip checkpoint, and the encoder of prompt embeddings.
- :mod:`xreid.prompts.learner`: :class:`PromptLearner`, the (2, C, n_ctx, width) context.
- :mod:`xreid.prompts.losses`: the image-to-text / text-to-image contrastive losses of
  stage 1 and the prompt classifier logits of stage 2.

Importing this package imports torch only; open_clip is imported when a text tower is built.
The two-stage training itself is :mod:`xreid.engine.prompt_stages`.
"""

from __future__ import annotations

from xreid.prompts.learner import (
    DEFAULT_TEMPLATE,
    MODALITY_WORDS,
    PLACEHOLDER,
    PromptLearner,
    tokenize_template,
)
from xreid.prompts.losses import (
    image_to_text_loss,
    prompt_logits,
    similarity,
    supervised_contrastive_loss,
    text_to_image_loss,
)
from xreid.prompts.text_tower import (
    TEXT_KEYS,
    TextTowerConfig,
    build_text_tower,
    encode_prompt_embeddings,
    extract_text_state,
    load_text_tower,
)

__all__ = [
    "DEFAULT_TEMPLATE",
    "MODALITY_WORDS",
    "PLACEHOLDER",
    "TEXT_KEYS",
    "PromptLearner",
    "TextTowerConfig",
    "build_text_tower",
    "encode_prompt_embeddings",
    "extract_text_state",
    "image_to_text_loss",
    "load_text_tower",
    "prompt_logits",
    "similarity",
    "supervised_contrastive_loss",
    "text_to_image_loss",
    "tokenize_template",
]
