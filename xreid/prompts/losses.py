"""Image-text losses of the two prompt stages (CLIP-ReID, Li, Sun and Li 2023, Eqs. 2-5).

Similarity ``s(a, b) = scale * <a, b>``; with ``normalize`` both features are first
L2-normalised (cosine similarity times CLIP's logit scale). CLIP-ReID uses the *raw* dot
product of the unnormalised projected features with scale 1 (its ``SupConLoss`` has
temperature 1.0); that is the default here.

**Supervised contrastive loss** (the form of both stage-1 directions). For queries q_i with
labels y_i and keys k_j with labels z_j, P(i) = {j : z_j = y_i} the positives of q_i::

    L = mean_i  -1/|P(i)| * sum_{j in P(i)} log( exp s(q_i, k_j) / sum_a exp s(q_i, k_a) )

Every query must have a positive. With distinct key labels (one key per class) it is the
cross-entropy of the logits ``s(q_i, k_.)`` against the class of q_i.

- :func:`image_to_text_loss` (L_i2t): queries = clip features, keys = prompt features. In
  CLIP-ReID the keys are the prompt features of the batch's own samples (so an identity
  present twice gives two positives); with the prompt features of every class as keys it is
  a plain cross-entropy over all prompts.
- :func:`text_to_image_loss` (L_t2i): queries = the batch's prompt features, keys = the
  batch's clip features; the positives of a prompt are all clips of its class in the batch.

Here the *class* of a clip is the pair (modality, identity), ``key = modality * C + label``:
each clip is pulled towards its identity's prompt of its own modality.

**Stage 2** (:func:`prompt_logits`): the frozen prompt features ``(M, C, d)`` are a
classifier; clip b is scored against the C prompts of its modality,
``logits[b, c] = s(image[b], text[modality[b], c])``, and trained with a cross-entropy
(CLIP-ReID's L_i2tce, with the ID loss's label smoothing).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from xreid._validation import check_floating, check_labels, check_tensor, shape_str

__all__ = [
    "image_to_text_loss",
    "prompt_logits",
    "similarity",
    "supervised_contrastive_loss",
    "text_to_image_loss",
]


def similarity(
    a: torch.Tensor, b: torch.Tensor, *, scale: float = 1.0, normalize: bool = False
) -> torch.Tensor:
    """(N, d), (M, d) -> (N, M) ``scale * <a, b>`` in float32 or wider (optionally cosine)."""
    dtype = torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32)
    a, b = a.to(dtype), b.to(dtype)
    if normalize:
        a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    return scale * (a @ b.t())


def _check_pair(x: object, name: str, labels: object, labels_name: str) -> torch.Tensor:
    t = check_floating(check_tensor(x, name, ndim=2, layout="(N, d)"), name)
    y = check_tensor(labels, labels_name, ndim=1, layout="(N,)")
    if y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
        raise ValueError(f"{labels_name}: expected an integer tensor, got dtype {y.dtype}")
    if y.shape[0] != t.shape[0]:
        raise ValueError(f"{labels_name}: expected {t.shape[0]} entries (one per row of "
                         f"{name}), got {y.shape[0]}")
    return t


def supervised_contrastive_loss(
    queries: torch.Tensor,
    keys: torch.Tensor,
    query_labels: torch.Tensor,
    key_labels: torch.Tensor,
    *,
    scale: float = 1.0,
    normalize: bool = False,
) -> torch.Tensor:
    """The supervised contrastive loss of the module docstring -> scalar (float32 or wider).

    Args:
        queries: (N, d); keys: (M, d); query_labels: (N,); key_labels: (M,) integer classes.
        scale: multiplies the similarities (1.0 in CLIP-ReID; CLIP's logit scale, 100, with
            ``normalize``).
        normalize: L2-normalise both features first.

    Raises ``ValueError`` when a query has no key of its class.
    """
    q = _check_pair(queries, "queries", query_labels, "query_labels")
    k = _check_pair(keys, "keys", key_labels, "key_labels")
    if q.shape[1] != k.shape[1]:
        raise ValueError(f"keys: expected width {q.shape[1]} (the queries'), got shape "
                         f"{shape_str(k)}")
    if q.shape[0] == 0:
        raise ValueError("queries: expected at least one row, got none")
    positives = query_labels.to(k.device).unsqueeze(1) == key_labels.to(k.device).unsqueeze(0)
    counts = positives.sum(dim=1)
    if bool((counts == 0).any()):
        bad = query_labels[(counts == 0).to(query_labels.device)].tolist()
        raise ValueError(f"key_labels: expected a key of every query's class, got none for "
                         f"classes {sorted(set(bad))[:10]}")
    with torch.autocast(device_type=q.device.type, enabled=False):
        log_prob = torch.log_softmax(similarity(q, k, scale=scale, normalize=normalize), dim=1)
        per_query = -(log_prob * positives).sum(dim=1) / counts
    return per_query.mean()


def image_to_text_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    image_labels: torch.Tensor,
    text_labels: torch.Tensor,
    *,
    scale: float = 1.0,
    normalize: bool = False,
) -> torch.Tensor:
    """L_i2t: each clip feature against the prompt features (positives: its class)."""
    return supervised_contrastive_loss(image_features, text_features, image_labels, text_labels,
                                       scale=scale, normalize=normalize)


# Deliberate mirror of image_to_text_loss (the paper names both directions; each is one call
# of supervised_contrastive_loss with the roles swapped).
def text_to_image_loss(
    text_features: torch.Tensor,
    image_features: torch.Tensor,
    text_labels: torch.Tensor,
    image_labels: torch.Tensor,
    *,
    scale: float = 1.0,
    normalize: bool = False,
) -> torch.Tensor:
    """L_t2i: each prompt feature against the batch's clip features (positives: every clip
    of its class)."""
    return supervised_contrastive_loss(text_features, image_features, text_labels, image_labels,
                                       scale=scale, normalize=normalize)


def prompt_logits(
    image_features: torch.Tensor,
    modality: torch.Tensor,
    text_features: torch.Tensor,
    *,
    scale: float = 1.0,
    normalize: bool = False,
) -> torch.Tensor:
    """Stage-2 logits (B, C): clip b against the C prompt features of its modality.

    Args:
        image_features: (B, d) clip features (TAP of the projected [CLS]).
        modality: (B,) modality codes in [0, M).
        text_features: (M, C, d) frozen prompt features.
    """
    img = check_floating(check_tensor(image_features, "image_features", ndim=2,
                                      layout="(B, d)"), "image_features")
    text = check_floating(check_tensor(text_features, "text_features", ndim=3,
                                       layout="(M, C, d)"), "text_features")
    if text.shape[2] != img.shape[1]:
        raise ValueError(f"text_features: expected width {img.shape[1]} (the image "
                         f"features'), got shape {shape_str(text)}")
    m = check_labels(modality, "modality", text.shape[0], length=img.shape[0])
    num_m, num_c, d = text.shape
    with torch.autocast(device_type=img.device.type, enabled=False):
        logits = similarity(img, text.reshape(num_m * num_c, d), scale=scale,
                            normalize=normalize).reshape(-1, num_m, num_c)
    return logits[torch.arange(img.shape[0], device=img.device), m.to(img.device)]
