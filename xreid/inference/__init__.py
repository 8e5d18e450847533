"""After training: load a trained model, embed your own tracklets, search, draw, export.

* :func:`load_model` -> :class:`LoadedModel` (model + :class:`Preprocessing`) from a training
  checkpoint alone (``weights_only=True``).
* :func:`embed_tracklets` -> :class:`EmbeddingSet`; :func:`save_embeddings` /
  :func:`load_embeddings` for the ``.safetensors`` files of ``xreid embed``.
* :func:`search` (:func:`exact_search`, :func:`faiss_search`) -> :class:`SearchResult`.
* :func:`draw_ranked_results`, :func:`plot_tsne`: the pictures of ``xreid show`` / ``xreid tsne``.
* :func:`export_onnx`: the inference embedder as ONNX.

The ``xreid`` command (:mod:`xreid.cli`) wraps these. Optional dependencies (PyAV, faiss,
scikit-learn, onnx) are imported only by the functions that need them.
"""

from xreid.inference.embeddings import (
    EMBEDDINGS_FORMAT,
    EmbeddingSet,
    embed_tracklets,
    load_embeddings,
    save_embeddings,
)
from xreid.inference.export import ONNX_OPSET, ONNX_PRODUCER, Embedder, export_onnx, is_xreid_onnx
from xreid.inference.loading import (
    CHECKPOINT_FORMAT,
    LoadedModel,
    Preprocessing,
    load_model,
    read_training_checkpoint,
)
from xreid.inference.reader_pictures import reader_features, save_ranked_results, save_tsne
from xreid.inference.search import SearchResult, exact_search, faiss_search, search
from xreid.inference.visualize import (
    average_precisions,
    draw_ranked_results,
    plot_tsne,
    tracklet_thumbnails,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "EMBEDDINGS_FORMAT",
    "ONNX_OPSET",
    "ONNX_PRODUCER",
    "Embedder",
    "EmbeddingSet",
    "LoadedModel",
    "Preprocessing",
    "SearchResult",
    "average_precisions",
    "draw_ranked_results",
    "embed_tracklets",
    "exact_search",
    "export_onnx",
    "faiss_search",
    "is_xreid_onnx",
    "load_embeddings",
    "load_model",
    "plot_tsne",
    "read_training_checkpoint",
    "reader_features",
    "save_embeddings",
    "save_ranked_results",
    "save_tsne",
    "search",
    "tracklet_thumbnails",
]
