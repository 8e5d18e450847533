"""The ``xreid`` command: after training, from your own footage to ranked results.

Subcommands: ``embed``, ``search``, ``show``, ``tsne``, ``export``, ``convert``
(``xreid <subcommand> --help``). Errors are one line, ``xreid: error: ...``, exit status 1
(2 for bad command-line usage); ``--debug`` shows the traceback.

No command writes over one of its inputs, or over an existing file it did not write itself,
unless ``--overwrite`` is given (:func:`xreid.output_files.check_output`); every output is
written whole or not at all.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["build_parser", "main"]


def _is_embeddings_of(checkpoint: str) -> Any:
    """``is_ours`` for ``embed``: an embeddings file made from the same checkpoint file."""

    def check(path: Path) -> bool:
        from xreid.inference import load_embeddings
        from xreid.output_files import same_file

        try:
            recorded = load_embeddings(path).meta.get("checkpoint")
        except (ValueError, OSError):
            return False
        return recorded is not None and same_file(recorded, checkpoint)

    return check


def _is_search_output(path: Path) -> bool:
    """``is_ours`` for ``search``: a JSON or CSV ranking in the layout ``search`` writes."""
    try:
        with open(path, encoding="utf-8") as fh:
            if path.suffix.lower() == ".csv":
                return fh.readline().strip().startswith("query,rank,gallery,distance")
            data = json.load(fh)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and {"metric", "top_k", "results"} <= data.keys()


def _device(name: str | None) -> str:
    import torch

    if name in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


# ---------------------------------------------------------------------------------- embed
def cmd_embed(ns: argparse.Namespace) -> int:
    import warnings

    import torch
    from tqdm import tqdm

    from xreid.data.folder import TrackletFolder
    from xreid.inference import embed_tracklets, load_model, save_embeddings
    from xreid.output_files import check_output

    check_output(ns.output, inputs=[ns.checkpoint, ns.input], overwrite=ns.overwrite,
                 is_ours=_is_embeddings_of(ns.checkpoint))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        folder = TrackletFolder(ns.input, modality=ns.modality, skip_bad=ns.skip_bad)
    for w in caught:
        print(f"xreid: warning: {w.message}", file=sys.stderr)
    loaded = load_model(ns.checkpoint, device=_device(ns.device))
    amp = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[ns.amp]
    with tqdm(total=len(folder), desc="embed", unit="tracklet", disable=ns.quiet) as bar:
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
def _warn(message: str) -> None:
    print(f"xreid: warning: {message}", file=sys.stderr)


def _load_pair(query: str, gallery: str, *, allow_mixed: bool = False) -> tuple[Any, Any]:
    """Both embeddings files, checked before anything is written: not empty, finite, of one
    size and one checkpoint (unless ``allow_mixed``); warnings for all-zero embeddings and for
    tracklets that are in both files."""
    import torch

    from xreid.inference import load_embeddings
    from xreid.output_files import same_file

    q, g = load_embeddings(query), load_embeddings(gallery)
    for name, e in ((query, q), (gallery, g)):
        if len(e) == 0:
            raise ValueError(f"embeddings: {name} has no entries")
        bad = (~torch.isfinite(e.embeddings)).any(dim=1).nonzero().flatten().tolist()
        if bad:
            names = ", ".join(e.names[i] for i in bad[:3]) + (", ..." if len(bad) > 3 else "")
            raise ValueError(f"embeddings: {name} holds NaN or infinite values in {len(bad)} "
                             f"of {len(e)} tracklets ({names}); refusing to rank them")
        zero = int((e.embeddings == 0).all(dim=1).sum())
        if zero:
            _warn(f"{name}: {zero} of {len(e)} embeddings are all zero (a blank input or a "
                  "broken model?); their distances carry no information")
    if q.dim != g.dim:
        raise ValueError(f"embeddings: {query} has size {q.dim} but {gallery} has {g.dim}; "
                         "embed both with the same checkpoint")
    qc, gc = q.meta.get("checkpoint"), g.meta.get("checkpoint")
    if qc and gc and qc != gc and not same_file(qc, gc) and not allow_mixed:
        raise ValueError(f"embeddings: {query} was made with the checkpoint {qc} but {gallery} "
                         f"with {gc}; embed both with one checkpoint, or pass --allow-mixed")
    shared = set(filter(None, q.sources)) & set(filter(None, g.sources))
    if shared:
        _warn(f"{len(shared)} tracklets are in both the query and the gallery file (same "
              "source); each matches itself at distance 0, which inflates R1 and mAP")
    return q, g


def _metrics_line(q: Any, g: Any, remove_same_camera: bool) -> str | None:
    """CMC / mAP when both sets are labelled (``None`` otherwise)."""
    import warnings

    from xreid.metrics import compute_distance, evaluate_ranking

    if not (q.labelled and g.labelled):
        return None
    if len(q) * len(g) > 2 * 10**8:
        return (f"metrics skipped: {len(q)} x {len(g)} distances do not fit the in-memory "
                "evaluation; use xreid.metrics.evaluate_ranking on chunks")
    rsc = remove_same_camera and q.has_cameras and g.has_cameras
    dist = compute_distance(q.embeddings, g.embeddings, "euclidean", normalize=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r = evaluate_ranking(dist, q.pids, g.pids, q.cameras if rsc else None,
                             g.cameras if rsc else None, remove_same_camera=rsc, max_rank=20)
    if r.num_valid_queries == 0:
        return "no query has a match in the gallery: CMC/mAP undefined"
    ranks = " ".join(f"R{k}={100 * r.rank(k):.2f}" for k in (1, 5, 10, 20))
    return (f"{ranks} mAP={100 * r.mAP:.2f} mINP={100 * r.mINP:.2f} "
            f"({r.num_valid_queries}/{len(q)} queries with a match)")


def cmd_search(ns: argparse.Namespace) -> int:
    from xreid.inference import search
    from xreid.output_files import atomic_write, check_output

    out = check_output(ns.output, inputs=[ns.query, ns.gallery], overwrite=ns.overwrite,
                       is_ours=_is_search_output)
    q, g = _load_pair(ns.query, ns.gallery, allow_mixed=ns.allow_mixed)
    res = search(q.embeddings, g.embeddings, ns.top_k, index=ns.index,
                 device=None if ns.index == "faiss" else _device(ns.device),
                 **({"nprobe": ns.nprobe} if ns.index == "faiss" else {}))
    rows = []
    for qi in range(len(q)):
        for r in range(res.indices.shape[1]):
            gi = int(res.indices[qi, r])
            if gi < 0:
                continue
            rows.append({"query": q.names[qi], "rank": r + 1, "gallery": g.names[gi],
                         "distance": round(float(res.distances[qi, r]), 6),
                         **({"match": bool(q.pids[qi] == g.pids[gi])}
                            if q.labelled and g.labelled else {})})
    if out.suffix.lower() == ".csv":
        import csv
        import io

        text = io.StringIO(newline="")
        fields = ["query", "rank", "gallery", "distance"]
        if q.labelled and g.labelled:
            fields.append("match")
        writer = csv.DictWriter(text, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        data = text.getvalue()
    else:
        by_query: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_query.setdefault(row["query"], []).append(
                {k: v for k, v in row.items() if k != "query"})
        data = json.dumps({"metric": "euclidean (L2-normalised)", "index": ns.index,
                           "top_k": ns.top_k, "results": by_query}, indent=1) + "\n"
    atomic_write(out, lambda fh: fh.write(data.encode("utf-8")), what="--output")
    print(f"wrote {out}: top-{res.indices.shape[1]} of {len(g)} for {len(q)} queries")
    line = _metrics_line(q, g, ns.remove_same_camera)
    if line:
        print(line)
    return 0


# ----------------------------------------------------------------------------------- show
def cmd_show(ns: argparse.Namespace) -> int:
    import torch

    from xreid.inference import (
        average_precisions,
        draw_ranked_results,
        exact_search,
        tracklet_thumbnails,
    )
    from xreid.metrics import compute_distance
    from xreid.output_files import check_output, is_xreid_png

    check_output(ns.output, inputs=[ns.query, ns.gallery], overwrite=ns.overwrite,
                 is_ours=is_xreid_png)
    q, g = _load_pair(ns.query, ns.gallery, allow_mixed=ns.allow_mixed)
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
    titles = []
    for i in chosen:
        t = q.names[i] + (f" (pid {int(q.pids[i])})" if q.pids[i] >= 0 else "")
        if ap is not None:
            t += f" AP {100 * float(ap[i]):.1f}%"
        titles.append(t)
    draw_ranked_results(qframes, gframes, res.indices, res.distances, ns.output,
                        matches=matches, query_titles=titles)
    print(f"wrote {ns.output}: {len(chosen)} queries x top-{res.indices.shape[1]}")
    return 0


# ----------------------------------------------------------------------------------- tsne
def cmd_tsne(ns: argparse.Namespace) -> int:
    from xreid.inference import EmbeddingSet, load_embeddings, plot_tsne
    from xreid.output_files import check_output, is_xreid_png

    check_output(ns.output, inputs=ns.embeddings, overwrite=ns.overwrite, is_ours=is_xreid_png)
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
    from xreid.inference.export import is_xreid_onnx
    from xreid.output_files import check_output

    check_output(ns.output, inputs=[ns.checkpoint], overwrite=ns.overwrite,
                 is_ours=is_xreid_onnx)
    loaded = load_model(ns.checkpoint, device="cpu")
    frames = ns.frames or loaded.preprocessing.num_frames
    export_onnx(loaded.model, ns.output, num_frames=frames,
                img_size=loaded.preprocessing.img_size, checkpoint=str(ns.checkpoint))
    h, w = loaded.preprocessing.img_size
    print(f"wrote {ns.output}: video (B, {frames}, 3, {h}, {w}) -> embedding "
          f"(B, {loaded.embedding_dim}), opset {ONNX_OPSET}; preprocessing: "
          f"{json.dumps(loaded.preprocessing.to_dict())}")
    return 0


# --------------------------------------------------------------------------------- parser
def _overwrite_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output file that this command did not write "
                   "(an output that is one of the inputs is always refused)")


def _allow_mixed_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-mixed", action="store_true",
                   help="accept query and gallery embeddings of two different checkpoints")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="xreid", description="X-ReID after training: embed your own tracklets, search, "
        "draw ranked results and t-SNE, export to ONNX.")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    e = sub.add_parser("embed", help="one embedding per tracklet of a folder -> .safetensors")
    e.add_argument("checkpoint", help="training checkpoint (checkpoint.pt)")
    e.add_argument("input", help="folder of frame folders and/or video files")
    e.add_argument("--output", "-o", required=True, help="embeddings file (.safetensors)")
    e.add_argument("--modality", choices=["visible", "infrared"],
                   help="modality of tracklets labels.csv does not label")
    e.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    e.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none")
    e.add_argument("--batch-size", type=int, default=16)
    e.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    e.add_argument("--use-cameras", action="store_true",
                   help="feed labels.csv cameras to the camera embedding (training cameras)")
    e.add_argument("--skip-bad", action="store_true",
                   help="skip unreadable tracklets with a warning instead of failing")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    _overwrite_flag(e)
    e.set_defaults(func=cmd_embed)

    s = sub.add_parser("search", help="top-k gallery tracklets of each query -> .json/.csv")
    s.add_argument("query", help="query embeddings (.safetensors)")
    s.add_argument("gallery", help="gallery embeddings (.safetensors)")
    s.add_argument("--top-k", type=int, default=10)
    s.add_argument("--output", "-o", required=True, help="ranks.json or ranks.csv")
    s.add_argument("--index", choices=["exact", "faiss"], default="exact",
                   help="exact chunked search, or a faiss IVF index (xreid[search])")
    s.add_argument("--nprobe", type=int, default=16, help="faiss: cells scanned per query")
    s.add_argument("--device", default="auto")
    s.add_argument("--remove-same-camera", action="store_true",
                   help="metrics: drop same-pid same-camera gallery entries (HITSZ-VCM rule)")
    _overwrite_flag(s)
    _allow_mixed_flag(s)
    s.set_defaults(func=cmd_search)

    w = sub.add_parser("show", help="ranked-results picture (.png)")
    w.add_argument("query")
    w.add_argument("gallery")
    w.add_argument("--output", "-o", required=True)
    w.add_argument("--top-k", type=int, default=5)
    w.add_argument("--num-queries", type=int, default=8, help="the first N queries")
    w.add_argument("--worst", type=int, default=0, help="the N queries with the lowest AP")
    w.add_argument("--frames", type=int, default=4, help="frames in each query strip")
    w.add_argument("--height", type=int, default=128, help="thumbnail height in pixels")
    _overwrite_flag(w)
    _allow_mixed_flag(w)
    w.set_defaults(func=cmd_show)

    t = sub.add_parser("tsne", help="t-SNE picture of embeddings (xreid[viz])")
    t.add_argument("embeddings", nargs="+", help="one or more .safetensors files")
    t.add_argument("--output", "-o", required=True)
    t.add_argument("--title", default="t-SNE")
    t.add_argument("--perplexity", type=float, default=30.0)
    t.add_argument("--seed", type=int, default=0)
    _overwrite_flag(t)
    t.set_defaults(func=cmd_tsne)

    x = sub.add_parser("export", help="export the inference embedder (xreid[export])")
    x.add_argument("checkpoint")
    x.add_argument("--format", choices=["onnx"], default="onnx")
    x.add_argument("--output", "-o", required=True)
    x.add_argument("--frames", type=int, default=None,
                   help="T of the exported clips (default: the training T)")
    _overwrite_flag(x)
    x.set_defaults(func=cmd_export)

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
    for key in ("batch_size", "top_k", "frames", "num_queries", "height"):
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
        from xreid.output_files import OutputRefused

        return 2 if isinstance(exc, OutputRefused) else 1
