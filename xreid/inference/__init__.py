"""After training: load a trained model, embed your own tracklets, search, draw, export.

* :func:`load_model` -> :class:`LoadedModel` (model + :class:`Preprocessing`) from a training
  checkpoint alone (``weights_only=True``).
* :func:`embed_tracklets` -> :class:`EmbeddingSet`; :func:`save_embeddings` /
  :func:`load_embeddings` for the ``.safetensors`` files of ``xreid embed``.
* :func:`search` (:func:`exact_search`, :func:`faiss_search`) -> :class:`SearchResult`.
* :func:`draw_ranked_results`, :func:`plot_tsne`: the pictures of ``xreid show`` / ``xreid tsne``.
* :func:`export_onnx`: the inference embedder as ONNX (metadata: :func:`onnx_metadata`).
* :func:`reranked_distances` / :func:`top_k_of`: k-reciprocal re-ranked search.
* :func:`plot_training_curve`: per-iteration losses and the learning rate of a run's log.
* :func:`eval_output_dir`, :func:`snapshot_files`, :func:`written_files`: where evaluation
  output goes and exactly which files a command wrote.
* :func:`build_index` / :func:`load_index`: a persistent faiss gallery index;
  :func:`make_server`: the HTTP search endpoint of ``xreid serve``.

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
from xreid.inference.export import (
    MIN_DYNAMIC_FRAMES,
    ONNX_OPSET,
    Embedder,
    export_onnx,
    input_dims,
    onnx_files,
    onnx_metadata,
)
from xreid.inference.index import (
    INDEX_FORMAT,
    GalleryIndex,
    build_index,
    is_index_file,
    load_index,
)
from xreid.inference.loading import (
    CHECKPOINT_FORMAT,
    LoadedModel,
    Preprocessing,
    file_sha256,
    load_model,
    read_training_checkpoint,
)
from xreid.inference.outputs import (
    RUN_FILES,
    eval_output_dir,
    format_written,
    snapshot_files,
    written_files,
)
from xreid.inference.reader_pictures import reader_features, save_ranked_results, save_tsne
from xreid.inference.search import (
    SearchResult,
    exact_search,
    faiss_search,
    reranked_distances,
    search,
    top_k_of,
)
from xreid.inference.serve import MAX_FRAMES, SearchService, make_server
from xreid.inference.training_curve import (
    ema,
    plot_training_curve,
    read_log,
    training_curve_figure,
)
from xreid.inference.visualize import (
    RankedPicture,
    average_precisions,
    draw_ranked_results,
    first_match_ranks,
    gallery_caption,
    identity_styles,
    plot_tsne,
    render_ranked_results,
    tracklet_thumbnails,
    tsne_figure,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "EMBEDDINGS_FORMAT",
    "INDEX_FORMAT",
    "MAX_FRAMES",
    "MIN_DYNAMIC_FRAMES",
    "ONNX_OPSET",
    "RUN_FILES",
    "Embedder",
    "EmbeddingSet",
    "GalleryIndex",
    "LoadedModel",
    "Preprocessing",
    "RankedPicture",
    "SearchResult",
    "SearchService",
    "average_precisions",
    "build_index",
    "draw_ranked_results",
    "ema",
    "embed_tracklets",
    "eval_output_dir",
    "exact_search",
    "export_onnx",
    "faiss_search",
    "file_sha256",
    "first_match_ranks",
    "format_written",
    "gallery_caption",
    "identity_styles",
    "input_dims",
    "is_index_file",
    "load_embeddings",
    "load_index",
    "load_model",
    "make_server",
    "onnx_files",
    "onnx_metadata",
    "plot_training_curve",
    "plot_tsne",
    "read_log",
    "read_training_checkpoint",
    "reader_features",
    "render_ranked_results",
    "reranked_distances",
    "save_embeddings",
    "save_ranked_results",
    "save_tsne",
    "search",
    "snapshot_files",
    "top_k_of",
    "tracklet_thumbnails",
    "training_curve_figure",
    "tsne_figure",
    "written_files",
]
