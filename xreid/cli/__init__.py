"""The ``xreid`` command: after training, from your own footage to ranked results.

Subcommands: ``embed``, ``search``, ``show``, ``tsne``, ``export``, ``index build``,
``serve``, ``convert`` (``xreid <subcommand> --help``; ``xreid --version``). Errors are one
line, ``xreid: error: ...``, exit status 1 (2 for bad command-line usage); ``--debug`` shows
the traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["build_parser", "main"]


def _device(name: str | None) -> str:
    import torch

    if name in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _not_an_input(output: str, *inputs: str | None) -> None:
    """Refuse an ``--output`` that is one of the command's input files."""
    out = Path(output).resolve()
    for src in inputs:
        if src and Path(src).resolve() == out:
            raise ValueError(f"--output: {output} is an input of this command; choose another "
                             "file")


# ---------------------------------------------------------------------------------- embed
def cmd_embed(ns: argparse.Namespace) -> int:
    import warnings

    import torch
    from tqdm import tqdm

    from xreid.data.folder import TrackletFolder
    from xreid.inference import embed_tracklets, load_model, save_embeddings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        folder = TrackletFolder(ns.input, modality=ns.modality, skip_bad=ns.skip_bad)
    for w in caught:
        print(f"xreid: warning: {w.message}", file=sys.stderr)
    loaded = load_model(ns.checkpoint, device=_device(ns.device))
    amp = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[ns.amp]
    # disable=None: no bar when stderr is not a terminal (no \r frames in a redirected log)
    with tqdm(total=len(folder), desc="embed", unit="tracklet",
              disable=True if ns.quiet else None) as bar:
        emb = embed_tracklets(
            loaded, folder, batch_size=ns.batch_size, autocast_dtype=amp,
            use_cameras=ns.use_cameras, skip_bad=ns.skip_bad, num_workers=ns.workers,
            progress=bar.update,
            on_skip=lambda name, msg: print(f"xreid: warning: skipped {name}: {msg}",
                                            file=sys.stderr),
        )
    save_embeddings(emb, ns.output)
    print(f"wrote {ns.output}: {len(emb)} tracklets x {emb.dim}")
    return 0


# --------------------------------------------------------------------------------- search
def _load_pair(query: str, gallery: str) -> tuple[Any, Any]:
    from xreid.inference import load_embeddings

    q, g = load_embeddings(query), load_embeddings(gallery)
    for name, e in ((query, q), (gallery, g)):
        if len(e) == 0:
            raise ValueError(f"embeddings: {name} has no entries")
    if q.dim != g.dim:
        raise ValueError(f"embeddings: {query} has size {q.dim} but {gallery} has {g.dim}; "
                         "embed both with the same checkpoint")
    return q, g


def _ranking_metrics(q: Any, g: Any, remove_same_camera: bool,
                     dist: Any = None) -> dict[str, Any] | None:
    """CMC / mAP / mINP over the whole gallery when both sets are labelled (``None``
    otherwise); ``dist`` the ``(Q, G)`` distances (default: Euclidean, normalised)."""
    import warnings

    from xreid.metrics import compute_distance, evaluate_ranking

    if not (q.labelled and g.labelled):
        return None
    if dist is None and len(q) * len(g) > 2 * 10**8:
        return {"skipped": f"{len(q)} x {len(g)} distances do not fit the in-memory "
                "evaluation; use xreid.metrics.evaluate_ranking on chunks"}
    rsc = remove_same_camera and q.has_cameras and g.has_cameras
    if dist is None:
        dist = compute_distance(q.embeddings, g.embeddings, "euclidean", normalize=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r = evaluate_ranking(dist, q.pids, g.pids, q.cameras if rsc else None,
                             g.cameras if rsc else None, remove_same_camera=rsc, max_rank=20)
    if r.num_valid_queries == 0:
        return {"skipped": "no query has a match in the gallery: CMC/mAP undefined"}
    cmc = [float(v) for v in r.cmc]
    return {"rank1": cmc[0], "rank5": cmc[4], "rank10": cmc[9], "rank20": cmc[19],
            "mAP": float(r.mAP), "mINP": float(r.mINP), "cmc": cmc,
            "num_valid_queries": int(r.num_valid_queries), "num_queries": len(q),
            "remove_same_camera": bool(rsc)}


def _metrics_line(m: dict[str, Any] | None) -> str | None:
    if m is None:
        return None
    if "skipped" in m:
        return "metrics skipped: " + m["skipped"]
    ranks = " ".join(f"R{k}={100 * m[f'rank{k}']:.2f}" for k in (1, 5, 10, 20))
    return (f"{ranks} mAP={100 * m['mAP']:.2f} mINP={100 * m['mINP']:.2f} "
            f"({m['num_valid_queries']}/{m['num_queries']} queries with a match)")


def _rerank_cli_values(values: list[str] | None) -> tuple[int, int, float] | None:
    if values is None:
        return None
    if not values:
        return (20, 6, 0.3)
    if len(values) != 3:
        raise argparse.ArgumentTypeError(
            f"--rerank: expected no value or three (K1 K2 LAMBDA), got {len(values)}")
    try:
        k1, k2, lam = int(values[0]), int(values[1]), float(values[2])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--rerank: expected integers K1 K2 and a float LAMBDA, got {values}") from None
    if k1 < 1 or k2 < 1 or not 0.0 <= lam <= 1.0:
        raise argparse.ArgumentTypeError(
            f"--rerank: expected K1, K2 >= 1 and LAMBDA in [0, 1], got {values}")
    return k1, k2, lam


def _file_info(path: str, emb: Any) -> dict[str, Any]:
    return {"file": str(Path(path).resolve()), "tracklets": len(emb),
            "checkpoint": emb.meta.get("checkpoint"),
            "checkpoint_sha256": emb.meta.get("checkpoint_sha256")}


def cmd_search(ns: argparse.Namespace) -> int:
    from xreid.inference import (
        load_embeddings,
        reranked_distances,
        search,
        top_k_of,
    )

    rerank = _rerank_cli_values(ns.rerank)
    index_file = ns.index not in ("exact", "faiss")
    _not_an_input(ns.output, ns.query, ns.gallery, ns.index if index_file else None)
    if index_file:
        from xreid.inference.index import load_index

        if ns.gallery is not None:
            raise ValueError(f"gallery: --index {ns.index} is the gallery; drop the GALLERY "
                             f"argument {ns.gallery}")
        if rerank is not None:
            raise ValueError("--rerank: needs exact distances; not available with an index file")
        gindex = load_index(ns.index)
        q, g = load_embeddings(ns.query), gindex.gallery
        if q.dim != g.dim:
            raise ValueError(f"embeddings: {ns.query} has size {q.dim} but the index "
                             f"{ns.index} has {g.dim}; embed both with the same checkpoint")
        res = gindex.search(q.embeddings, ns.top_k, nprobe=ns.nprobe)
        gallery_name = ns.index
    else:
        if ns.gallery is None:
            raise ValueError("gallery: expected a GALLERY embeddings file (or --index FILE)")
        q, g = _load_pair(ns.query, ns.gallery)
        gallery_name = ns.gallery
    dist = None
    if rerank is not None:
        if ns.index != "exact":
            raise ValueError("--rerank: needs exact distances; drop --index faiss")
        dist = reranked_distances(q.embeddings, g.embeddings, k1=rerank[0], k2=rerank[1],
                                  lambda_value=rerank[2], device=_device(ns.device))
        res = top_k_of(dist, ns.top_k)
    elif not index_file:
        res = search(q.embeddings, g.embeddings, ns.top_k, index=ns.index,
                     device=None if ns.index == "faiss" else _device(ns.device),
                     **({"nprobe": ns.nprobe or 16} if ns.index == "faiss" else {}))
    metrics = _ranking_metrics(q, g, ns.remove_same_camera, dist)
    out = Path(ns.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    labelled = q.labelled and g.labelled
    rows = []
    for qi in range(len(q)):
        for r in range(res.indices.shape[1]):
            gi = int(res.indices[qi, r])
            if gi < 0:
                continue
            rows.append({"query": q.names[qi], "rank": r + 1, "gallery": g.names[gi],
                         "distance": round(float(res.distances[qi, r]), 6),
                         **({"match": bool(q.pids[qi] == g.pids[gi])} if labelled else {})})
    if out.suffix.lower() == ".csv":
        import csv

        with open(out, "w", newline="") as fh:
            fields = ["query", "rank", "gallery", "distance"] + (["match"] if labelled else [])
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    else:
        by_query: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_query.setdefault(row["query"], []).append(
                {k: v for k, v in row.items() if k != "query"})
        protocol = {
            "distance": ("k-reciprocal re-ranking of the Euclidean distances between "
                         "L2-normalised embeddings" if rerank else
                         "Euclidean between L2-normalised embeddings"),
            "rerank": ({"k1": rerank[0], "k2": rerank[1], "lambda": rerank[2]}
                       if rerank else None),
            "search": ("index file" if index_file else ns.index),
            "metrics_ranking": ("re-ranked distances, whole gallery" if rerank else
                                "exact distances, whole gallery"),
            "remove_same_camera": bool(metrics.get("remove_same_camera", False))
            if metrics else bool(ns.remove_same_camera),
            "max_rank": 20,
        }
        doc = {"metric": "euclidean (L2-normalised)", "index": ns.index, "top_k": ns.top_k,
               "protocol": protocol, "query": _file_info(ns.query, q),
               "gallery": _file_info(gallery_name, g), "metrics": metrics,
               "results": by_query}
        out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}: top-{res.indices.shape[1]} of {len(g)} for {len(q)} queries")
    line = _metrics_line(metrics)
    if line:
        print(line)
    return 0


# ----------------------------------------------------------------------------------- show
def cmd_show(ns: argparse.Namespace) -> int:
    import os

    import torch

    from xreid.inference import (
        average_precisions,
        draw_ranked_results,
        exact_search,
        first_match_ranks,
        gallery_caption,
        tracklet_thumbnails,
    )
    from xreid.metrics import compute_distance

    q, g = _load_pair(ns.query, ns.gallery)
    if ns.root is not None:
        roots = [e.meta.get("input_root") for e in (q, g) if e.meta.get("input_root")]
        base = os.path.commonpath(roots) if roots else None
        q, g = q.relocate(ns.root, base), g.relocate(ns.root, base)
    labelled = q.labelled and g.labelled
    if ns.worst:
        if not labelled:
            raise ValueError("--worst: needs identities (pid) in both embeddings files")
        dist = compute_distance(q.embeddings, g.embeddings, "euclidean", normalize=True)
        ap = average_precisions(dist, q.pids, g.pids)
        valid = torch.nonzero(~torch.isnan(ap)).flatten()
        chosen = valid[torch.argsort(ap[valid], stable=True)[: ns.worst]].tolist()
    else:
        chosen = list(range(min(ns.num_queries, len(q))))
        ap = None
    qe = q.embeddings[chosen]
    res = exact_search(qe, g.embeddings, ns.top_k)
    size = (ns.height, ns.height // 2)
    qframes = [tracklet_thumbnails(q.sources[i], ns.frames, size) for i in chosen]
    needed = sorted({int(i) for i in res.indices.flatten()})
    thumbs = {i: tracklet_thumbnails(g.sources[i], 1, size)[0] for i in needed}
    blank = next(iter(thumbs.values()))
    gframes = [thumbs.get(i, blank) for i in range(len(g))]
    matches = (g.pids[res.indices] == q.pids[chosen][:, None]) if labelled else None
    first = None
    if labelled:
        first = first_match_ranks(
            compute_distance(qe, g.embeddings, "euclidean", normalize=True),
            q.pids[chosen], g.pids)
    titles = []
    for i in chosen:
        t = q.names[i] + (f" (id {int(q.pids[i])})" if q.pids[i] >= 0 else "")
        if q.cameras[i] >= 0:
            t += f" cam {int(q.cameras[i])}"
        if ap is not None:
            t += f" AP {100 * float(ap[i]):.1f}%"
        titles.append(t)
    captions = [gallery_caption(g.names[i], int(g.pids[i]), int(g.cameras[i]))
                for i in range(len(g))]
    draw_ranked_results(qframes, gframes, res.indices, res.distances, ns.output,
                        matches=matches, query_titles=titles, gallery_captions=captions,
                        query_modalities=[int(q.modalities[i]) for i in chosen],
                        gallery_modalities=g.modalities.tolist(), first_match=first)
    print(f"wrote {ns.output}: {len(chosen)} queries x top-{res.indices.shape[1]}")
    return 0


# ----------------------------------------------------------------------------------- tsne
def cmd_tsne(ns: argparse.Namespace) -> int:
    from xreid.inference import EmbeddingSet, load_embeddings, plot_tsne

    sets = [load_embeddings(p) for p in ns.embeddings]
    for p, s in zip(ns.embeddings, sets):
        if len(s) == 0:
            raise ValueError(f"embeddings: {p} has no entries")
    emb = EmbeddingSet.concatenate(sets)
    plot_tsne(emb.embeddings, emb.pids.numpy(), emb.modalities.numpy(), ns.output,
              title=ns.title, perplexity=ns.perplexity, seed=ns.seed)
    print(f"wrote {ns.output}: {len(emb)} tracklets")
    return 0


# --------------------------------------------------------------------------------- export
def cmd_export(ns: argparse.Namespace) -> int:
    from xreid.inference import ONNX_OPSET, export_onnx, load_model
    from xreid.inference.export import onnx_files, onnx_metadata

    loaded = load_model(ns.checkpoint, device="cpu")
    frames = ns.frames or loaded.preprocessing.num_frames
    metadata = {**loaded.preprocessing.to_dict(), "embedding_dim": loaded.embedding_dim,
                "checkpoint_sha256": loaded.sha256}
    export_onnx(loaded.model, ns.output, num_frames=frames,
                img_size=loaded.preprocessing.img_size, metadata=metadata)
    h, w = loaded.preprocessing.img_size
    files = onnx_files(ns.output)
    t_axis = onnx_metadata(ns.output).get("xreid.frames", str(frames))
    t_text = f"frames>={t_axis[:-2]}" if t_axis.endswith("..") else t_axis
    print(f"wrote {', '.join(str(f) for f in files)}: video (batch, {t_text}, 3, {h}, {w}) "
          f"-> embedding (batch, {loaded.embedding_dim}), opset {ONNX_OPSET}; preprocessing "
          f"in the model metadata: {json.dumps(loaded.preprocessing.to_dict())}")
    if len(files) > 1:
        print(f"the weights exceed the 2 GB protobuf limit: {files[0].name} and "
              f"{', '.join(f.name for f in files[1:])} travel together (same folder)")
    return 0


# ---------------------------------------------------------------------------------- index
def cmd_index(ns: argparse.Namespace) -> int:
    from xreid.inference import load_embeddings
    from xreid.inference.index import build_index

    if ns.action != "build":
        raise ValueError(f"index: expected the action 'build', got {ns.action!r}")
    _not_an_input(ns.output, ns.gallery)
    gallery = load_embeddings(ns.gallery)
    built = build_index(gallery, ns.output, nlist=ns.nlist, nprobe=ns.nprobe,
                        holdout=ns.holdout, recall_k=ns.recall_k, seed=ns.seed)
    b = built.build
    recall = b[f"recall@{b['recall_k']}"]
    print(f"wrote {ns.output}: {b['type']} over {b['gallery_size']} x {b['dim']}, "
          f"nlist {b['nlist']}, nprobe {b['nprobe']}, k-means on {b['trained_on']}")
    print(f"recall@{b['recall_k']} against exact search on {b['holdout']} held-out gallery "
          f"entries (seed {b['seed']}): {recall:.4f}")
    return 0


# ---------------------------------------------------------------------------------- serve
def cmd_serve(ns: argparse.Namespace) -> int:
    from xreid.inference.serve import make_server

    server = make_server(ns.checkpoint, ns.gallery, host=ns.host, port=ns.port,
                         top_k=ns.top_k, device=_device(ns.device),
                         max_bytes=ns.max_mb * 2**20)
    host, port = server.server_address[:2]
    print(f"serving on http://{host}:{port}/ (POST /search, GET /health); Ctrl-C stops",
          flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


# --------------------------------------------------------------------------------- parser
class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help with every option's default shown (``(default: ...)``), none for flags/None."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False) or isinstance(action.default, list):
            return action.help or ""
        return super()._get_help_string(action) or ""


def build_parser() -> argparse.ArgumentParser:
    from xreid.version import __version__

    p = argparse.ArgumentParser(
        prog="xreid", formatter_class=_Formatter,
        description="X-ReID after training: embed your own tracklets, search, draw ranked "
        "results and t-SNE, export to ONNX, index a gallery, serve searches.")
    p.add_argument("--version", action="version", version=f"xreid {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND",
                           help="what to do ('xreid COMMAND --help' lists its options)")

    def command(name: str, text: str, **kw: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text, formatter_class=_Formatter,
                              **kw)

    e = command("embed", "one embedding per tracklet of a folder -> .safetensors")
    e.add_argument("checkpoint", help="training checkpoint (checkpoint.pt)")
    e.add_argument("input", help="folder of frame folders and/or video files")
    e.add_argument("--output", "-o", required=True, help="embeddings file (.safetensors)")
    e.add_argument("--modality", choices=["visible", "infrared"],
                   help="modality of tracklets labels.csv does not label")
    e.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    e.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none",
                   help="autocast dtype of the forward pass")
    e.add_argument("--batch-size", type=int, default=16, help="tracklets per forward pass")
    e.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    e.add_argument("--use-cameras", action="store_true",
                   help="feed labels.csv cameras to the camera embedding (training cameras)")
    e.add_argument("--skip-bad", action="store_true",
                   help="skip unreadable tracklets with a warning instead of failing")
    e.add_argument("--quiet", action="store_true",
                   help="no progress bar (there is none anyway when stderr is not a terminal)")
    e.set_defaults(func=cmd_embed)

    s = command("search", "top-k gallery tracklets of each query -> .json/.csv")
    s.add_argument("query", help="query embeddings (.safetensors, from xreid embed)")
    s.add_argument("gallery", nargs="?",
                   help="gallery embeddings (.safetensors); omitted with --index FILE")
    s.add_argument("--top-k", type=int, default=10, help="results per query")
    s.add_argument("--output", "-o", required=True,
                   help="ranks.json (ranks, metrics, protocol, checkpoint hashes) or ranks.csv "
                   "(ranks only)")
    s.add_argument("--index", default="exact", metavar="exact|faiss|FILE",
                   help="exact chunked search; 'faiss': an IVF index built for this search "
                   "(xreid[search]); or an index FILE from 'xreid index build'")
    s.add_argument("--nprobe", type=int, default=None,
                   help="cells scanned per query (default: 16 for 'faiss', the build's value "
                   "for an index file)")
    s.add_argument("--rerank", nargs="*", metavar="K1 K2 LAMBDA", default=None,
                   help="k-reciprocal re-ranking (Zhong et al. 2017), exact, computed in "
                   "chunks of rows; no value: 20 6 0.3. Cost: memory about 14 (Q+G)^2 bytes "
                   "(measured 0.9 GB and 32 s on 2 CPU threads at Q+G = 8,000), growing "
                   "with (Q+G)^2; see docs/own-data.md")
    s.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    s.add_argument("--remove-same-camera", action="store_true",
                   help="metrics: drop same-pid same-camera gallery entries (HITSZ-VCM rule)")
    s.set_defaults(func=cmd_search)

    w = command("show", "ranked-results picture (.png)")
    w.add_argument("query", help="query embeddings (.safetensors)")
    w.add_argument("gallery", help="gallery embeddings (.safetensors)")
    w.add_argument("--output", "-o", required=True, help="picture (.png)")
    w.add_argument("--top-k", type=int, default=5, help="gallery results per query")
    w.add_argument("--num-queries", type=int, default=8, help="the first N queries")
    w.add_argument("--worst", type=int, default=0,
                   help="the N queries with the lowest AP instead (0: off)")
    w.add_argument("--frames", type=int, default=4, help="frames in each query strip")
    w.add_argument("--height", type=int, default=128, help="thumbnail height in pixels")
    w.add_argument("--root", default=None,
                   help="folder the footage moved to: sources are looked up under it, by "
                   "their path relative to the folder(s) 'xreid embed' read")
    w.set_defaults(func=cmd_show)

    t = command("tsne", "t-SNE picture of embeddings (xreid[viz])")
    t.add_argument("embeddings", nargs="+", help="one or more .safetensors files")
    t.add_argument("--output", "-o", required=True, help="picture (.png)")
    t.add_argument("--title", default="t-SNE", help="title (counts are appended)")
    t.add_argument("--perplexity", type=float, default=30.0,
                   help="t-SNE perplexity (capped at (N - 1) / 3)")
    t.add_argument("--seed", type=int, default=0, help="t-SNE random state")
    t.set_defaults(func=cmd_tsne)

    x = command("export", "export the inference embedder (xreid[export])")
    x.add_argument("checkpoint", help="training checkpoint (checkpoint.pt)")
    x.add_argument("--format", choices=["onnx"], default="onnx", help="export format")
    x.add_argument("--output", "-o", required=True, help="model file (.onnx)")
    x.add_argument("--frames", type=int, default=None,
                   help="T of the example clip; the frame axis stays dynamic (T >= 3) where "
                   "the model allows (default: the training T)")
    x.set_defaults(func=cmd_export)

    i = command("index", "build a persistent faiss index of a gallery (xreid[search])")
    i.add_argument("action", choices=["build"], help="what to do: build")
    i.add_argument("gallery", help="gallery embeddings (.safetensors)")
    i.add_argument("--output", "-o", required=True, help="index file (e.g. gallery.index)")
    i.add_argument("--nlist", type=int, default=None,
                   help="IVF cells (default: 4 sqrt(G), at most G/39)")
    i.add_argument("--nprobe", type=int, default=16, help="cells scanned per query")
    i.add_argument("--holdout", type=int, default=1000,
                   help="held-out gallery entries for the recall check (at most G/10)")
    i.add_argument("--recall-k", type=int, default=10, help="k of the reported recall@k")
    i.add_argument("--seed", type=int, default=0, help="sampling and k-means seed")
    i.set_defaults(func=cmd_index)

    v = command("serve", "HTTP search endpoint: a clip in, the top-k gallery tracklets out "
                "(xreid[serve])")
    v.add_argument("checkpoint", help="training checkpoint (checkpoint.pt)")
    v.add_argument("--gallery", required=True,
                   help="gallery: an index file (xreid index build) or embeddings .safetensors")
    v.add_argument("--host", default="127.0.0.1", help="address to listen on")
    v.add_argument("--port", type=int, default=8080, help="port (0: any free port)")
    v.add_argument("--top-k", type=int, default=10, help="results per request (default)")
    v.add_argument("--max-mb", type=int, default=64, help="largest request body, in MiB")
    v.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    v.set_defaults(func=cmd_serve)

    c = sub.add_parser("convert", help="convert pre-trained weights (as xreid-convert)",
                       add_help=False)
    c.set_defaults(func=None)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug:
        argv.remove("--debug")
    if argv and argv[0] == "convert":
        from xreid.convert import main as convert_main

        return int(convert_main(argv[1:]) or 0)
    parser = build_parser()
    ns = parser.parse_args(argv)
    if ns.command is None:
        parser.print_help()
        return 2
    if getattr(ns, "rerank", None) is not None:
        try:
            _rerank_cli_values(ns.rerank)
        except argparse.ArgumentTypeError as exc:
            parser.error(str(exc))
    for key in ("batch_size", "top_k", "frames", "num_queries", "height", "nprobe", "max_mb",
                "holdout", "recall_k", "nlist"):
        value = getattr(ns, key, None)
        if value is not None and value < 1:
            parser.error(f"--{key.replace('_', '-')}: expected a positive integer, got {value}")
    try:
        return int(ns.func(ns) or 0)
    except KeyboardInterrupt:
        print("xreid: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line unless --debug
        if debug:
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"xreid: error: {message}", file=sys.stderr)
        return 1
