"""Identity- and modality-specific learnable prompts (CLIP-ReID's prompt learner, Fig. 1(a)).

The template ``"A photo of a X X X X person."`` is tokenised once with CLIP's BPE tokenizer
(open_clip's ``SimpleTokenizer``, whose vocabulary ships inside the package) and embedded
with the frozen ``token_embedding``. The ``n_ctx`` placeholder words ``X`` are replaced, for
identity ``c`` of modality ``m``, by the learned vectors ``ctx[m, c]``::

    prompt(m, c) = [prefix; ctx[m, c]; suffix]                        (L, W)
    prefix = embed("<sot> a photo of a"),  suffix = embed("person . <eot> <pad>...")

A template may name the modality with ``{modality}`` (filled with :data:`MODALITY_WORDS`,
e.g. ``"A {modality} video of a X X X X person."``, the paper's "A visible/infrared video of
a XXXX person"): each modality then has its own prefix and suffix, which must place the
placeholders and the end-of-text token at the same positions in every modality.

Shapes: M modalities (2: ``VISIBLE`` = 0, ``INFRARED`` = 1), C identities, n_ctx learned
tokens (4 for the default template), W the text width, L the context length (77).
``ctx`` is initialised from N(0, 0.02^2), as CLIP-ReID's class-specific context. The prompt
features are ``encode_prompt_embeddings(text_tower, prompt, eot_index)``.
"""

from __future__ import annotations

import torch
from torch import nn

from xreid._validation import check_labels, check_positive_int, shape_str

__all__ = ["DEFAULT_TEMPLATE", "MODALITY_WORDS", "PLACEHOLDER", "PromptLearner",
           "tokenize_template"]

DEFAULT_TEMPLATE = "A photo of a X X X X person."
"""CLIP-ReID's person template; each ``X`` is one learned token."""
PLACEHOLDER = "X"
MODALITY_WORDS: tuple[str, ...] = ("visible", "infrared")
"""The words a template's ``{modality}`` becomes, by modality code (``VISIBLE``, ``INFRARED``)."""


def tokenize_template(template: str, context_length: int = 77) -> tuple[torch.Tensor, int, int]:
    """Tokenise ``template`` -> (tokens (L,) long, first placeholder position, n_ctx).

    The placeholder words ``X`` must form one contiguous run (at least one).
    """
    from open_clip.tokenizer import SimpleTokenizer

    if not isinstance(template, str):
        raise ValueError(f"template: expected a string, got {type(template).__name__}")
    tokenizer = SimpleTokenizer(context_length=context_length)
    placeholder = tokenizer.encode(PLACEHOLDER)
    if len(placeholder) != 1:  # pragma: no cover - fixed by the vocabulary
        raise RuntimeError(f"the placeholder {PLACEHOLDER!r} is not a single BPE token")
    n_words = len(tokenizer.encode(template))
    if n_words + 2 > context_length:
        raise ValueError(f"template: expected at most {context_length - 2} BPE tokens, got "
                         f"{n_words} for {template!r}")
    tokens = tokenizer(template)[0].long()
    where = torch.nonzero(tokens == placeholder[0]).flatten().tolist()
    if not where or where != list(range(where[0], where[0] + len(where))):
        raise ValueError(
            f"template: expected one contiguous run of placeholder words {PLACEHOLDER!r} "
            f"(e.g. {DEFAULT_TEMPLATE!r}), got {template!r}"
        )
    return tokens, where[0], len(where)


class PromptLearner(nn.Module):
    """Learned prompts per (modality, identity): ``forward(modality (N,), labels (N,))
    -> (N, L, W)`` token embeddings for :func:`~xreid.prompts.encode_prompt_embeddings`.

    Args:
        num_identities: C.
        token_embedding: the text tower's ``token_embedding`` (an ``nn.Embedding`` (V, W));
            only read here (the template's fixed words).
        template: the prompt with a contiguous run of ``X`` words (n_ctx learned tokens),
            optionally with ``{modality}`` (one filled template per modality).
        num_modalities: M (2: visible, infrared).
        context_length: L, the text tower's context length.
        init_std: standard deviation of the normal initialisation of ``ctx``.

    Attributes:
        ctx: (M, C, n_ctx, W) parameter, the only learnable (and persistent) tensor.
        tokens: (L,) the tokenised template (of modality 0 when the template names the
            modality); ``eot_index`` the end-of-text position.
    """

    def __init__(
        self,
        num_identities: int,
        token_embedding: nn.Embedding,
        *,
        template: str = DEFAULT_TEMPLATE,
        num_modalities: int = 2,
        context_length: int = 77,
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        check_positive_int(num_identities, "num_identities")
        check_positive_int(num_modalities, "num_modalities")
        if not isinstance(token_embedding, nn.Embedding):
            raise ValueError("token_embedding: expected the text tower's nn.Embedding, got "
                             f"{type(token_embedding).__name__}")
        if not isinstance(template, str):
            raise ValueError(f"template: expected a string, got {type(template).__name__}")
        if "{modality}" in template and num_modalities > len(MODALITY_WORDS):
            raise ValueError(f"template: '{{modality}}' names {len(MODALITY_WORDS)} "
                             f"modalities, got num_modalities={num_modalities}")
        filled = [template.replace("{modality}", MODALITY_WORDS[m])
                  for m in range(num_modalities)]
        parsed = [tokenize_template(t, context_length) for t in filled]
        tokens, start, n_ctx = parsed[0]
        for t, (tok, s, n) in zip(filled, parsed):
            if (s, n, int(tok.argmax())) != (start, n_ctx, int(tokens.argmax())):
                raise ValueError(
                    f"template: expected every modality's prompt to place its placeholders "
                    f"and end token at the same positions, got {filled[0]!r} and {t!r}")
        width = token_embedding.embedding_dim
        with torch.no_grad():
            weight = token_embedding.weight
            embedded = torch.stack([token_embedding(tok.to(weight.device)).float().cpu()
                                    for tok, _, _ in parsed])  # (M, L, W)
        self.template = template
        self.num_identities = num_identities
        self.num_modalities = num_modalities
        self.n_ctx = n_ctx
        self.width = width
        self.eot_index = int(tokens.argmax())
        self.register_buffer("tokens", tokens, persistent=False)
        # (M, start, W) and (M, L - start - n_ctx, W): one fixed text per modality
        self.register_buffer("token_prefix", embedded[:, :start].clone(), persistent=False)
        self.register_buffer("token_suffix", embedded[:, start + n_ctx:].clone(),
                             persistent=False)
        self.ctx = nn.Parameter(torch.empty(num_modalities, num_identities, n_ctx, width))
        nn.init.normal_(self.ctx, std=init_std)

    def forward(self, modality: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        y = check_labels(labels, "labels", self.num_identities)
        m = check_labels(modality, "modality", self.num_modalities, length=y.shape[0])
        n = y.shape[0]
        m = m.to(self.ctx.device)
        ctx = self.ctx[m, y.to(self.ctx.device)]  # (N, n_ctx, W)
        prefix = self.token_prefix.to(ctx.dtype)[m]
        suffix = self.token_suffix.to(ctx.dtype)[m]
        assert prefix.shape[0] == n
        return torch.cat([prefix, ctx, suffix], dim=1)

    def all_prompts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(modality, labels), each (M * C,), enumerating every prompt modality-major."""
        m = torch.arange(self.num_modalities).repeat_interleave(self.num_identities)
        y = torch.arange(self.num_identities).repeat(self.num_modalities)
        return m.to(self.ctx.device), y.to(self.ctx.device)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        ctx = state_dict.get("ctx")
        if isinstance(ctx, torch.Tensor) and ctx.shape != self.ctx.shape:
            raise ValueError(
                f"ctx: expected shape {shape_str(self.ctx)} (modalities, identities, n_ctx, "
                f"width), got {shape_str(ctx)}"
            )
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def extra_repr(self) -> str:
        return (f"template={self.template!r}, num_modalities={self.num_modalities}, "
                f"num_identities={self.num_identities}, n_ctx={self.n_ctx}, width={self.width}")
