"""A small HTTP search endpoint: a clip in, the top-k gallery tracklets out.

Standard library only (``http.server``, one thread per request, one model forward at a
time). Endpoints:

* ``GET /health`` -> ``{"status": "ok", "gallery_size", "embedding_dim",
  "checkpoint_sha256", "preprocessing"}``.
* ``POST /search`` with either
  - ``Content-Type: application/json``: ``{"frames": [base64 JPEG/PNG, ...],
    "top_k": K (optional)}``: the frames of one tracklet, in temporal order; or
  - a video file as the body (``Content-Type: video/*`` or ``application/octet-stream``;
    PyAV decodes it), ``?top_k=K`` optional;
  -> ``{"top_k": K, "results": [{"rank", "gallery", "distance", "pid", "camera",
  "modality"}, ...]}``.

The clip is embedded exactly as ``xreid embed`` embeds a tracklet (the checkpoint's frame
sampling, size and normalisation), and searched in the gallery (an index file from
``xreid index build``, or an embeddings file searched exactly). Bounds: request bodies over
``max_bytes`` (413), more than ``MAX_FRAMES`` frames, undecodable input (400) are refused
with a JSON ``{"error": ...}``; a request that takes over ``timeout`` seconds to arrive is
dropped. Bind to 127.0.0.1 (the default) unless a proxy in front handles authentication.
"""

from __future__ import annotations

import base64
import binascii
import json
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from xreid.inference.index import is_index_file

__all__ = ["MAX_FRAMES", "SearchService", "make_server"]

MAX_FRAMES = 1024
_IMAGE_MAGIC = {b"\x89PNG": ".png", b"\xff\xd8\xff": ".jpg"}


class RequestError(ValueError):
    """A bad request: answered with this HTTP status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class SearchService:
    """The model and the gallery behind the endpoint; :meth:`search_frames` /
    :meth:`search_video` embed one clip and return its top-k as JSON-ready dicts."""

    def __init__(self, checkpoint: str | Path, gallery: str | Path, *, top_k: int = 10,
                 device: str | None = None) -> None:
        from xreid.inference.embeddings import load_embeddings
        from xreid.inference.loading import load_model

        self.loaded = load_model(checkpoint, device=device or "cpu")
        self.sha256 = self.loaded.sha256
        self.index = None
        if is_index_file(gallery):
            from xreid.inference.index import load_index

            self.index = load_index(gallery)
            self.gallery = self.index.gallery
        else:
            self.gallery = load_embeddings(gallery)
        if self.gallery.dim != self.loaded.embedding_dim:
            raise ValueError(f"gallery: {gallery} holds embeddings of size {self.gallery.dim}, "
                             f"the checkpoint gives {self.loaded.embedding_dim}")
        self.top_k = top_k
        self.lock = threading.Lock()

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "gallery_size": len(self.gallery),
                "embedding_dim": self.loaded.embedding_dim, "checkpoint_sha256": self.sha256,
                "preprocessing": self.loaded.preprocessing.to_dict()}

    def _embed_folder(self, root: Path) -> Any:
        from xreid.data.folder import TrackletFolder
        from xreid.inference.embeddings import embed_tracklets

        try:
            folder = TrackletFolder(root, modality="visible")
            with self.lock:
                emb = embed_tracklets(self.loaded, folder, batch_size=1)
        except Exception as exc:  # undecodable frames or video
            raise RequestError(400, f"clip: cannot be read ({exc})") from exc
        return emb.embeddings

    def search_frames(self, frames: list[bytes], top_k: int) -> dict[str, Any]:
        if not frames:
            raise RequestError(400, "frames: expected at least one image, got none")
        if len(frames) > MAX_FRAMES:
            raise RequestError(400, f"frames: expected at most {MAX_FRAMES}, got {len(frames)}")
        with tempfile.TemporaryDirectory(prefix="xreid-serve-") as tmp:
            clip = Path(tmp) / "clip"
            clip.mkdir()
            for i, data in enumerate(frames):
                ext = next((e for magic, e in _IMAGE_MAGIC.items() if data.startswith(magic)),
                           None)
                if ext is None:
                    raise RequestError(400, f"frames[{i}]: expected a JPEG or PNG image")
                (clip / f"frame{i}{ext}").write_bytes(data)
            return self._search(self._embed_folder(Path(tmp)), top_k)

    def search_video(self, data: bytes, top_k: int) -> dict[str, Any]:
        if not data:
            raise RequestError(400, "body: expected a video file, got an empty body")
        with tempfile.TemporaryDirectory(prefix="xreid-serve-") as tmp:
            (Path(tmp) / "clip.mp4").write_bytes(data)
            return self._search(self._embed_folder(Path(tmp)), top_k)

    def _search(self, query: Any, top_k: int) -> dict[str, Any]:
        from xreid.inference.search import exact_search

        if top_k < 1:
            raise RequestError(400, f"top_k: expected a positive integer, got {top_k}")
        res = (self.index.search(query, top_k) if self.index is not None
               else exact_search(query, self.gallery.embeddings, top_k))
        g = self.gallery
        results = []
        for r in range(res.indices.shape[1]):
            gi = int(res.indices[0, r])
            if gi < 0:
                continue
            results.append({"rank": r + 1, "gallery": g.names[gi],
                            "distance": float(res.distances[0, r]), "pid": int(g.pids[gi]),
                            "camera": int(g.cameras[gi]), "modality": int(g.modalities[gi])})
        return {"top_k": top_k, "results": results}


def make_server(checkpoint: str | Path, gallery: str | Path, *, host: str = "127.0.0.1",
                port: int = 8080, top_k: int = 10, device: str | None = None,
                max_bytes: int = 64 * 2**20, timeout: float = 30.0) -> ThreadingHTTPServer:
    """A ready :class:`ThreadingHTTPServer` (call ``serve_forever()``; ``port=0`` picks a
    free port, read it from ``server.server_address``)."""
    service = SearchService(checkpoint, gallery, top_k=top_k, device=device)

    class Handler(BaseHTTPRequestHandler):
        server_version = "xreid"

        def setup(self) -> None:
            super().setup()
            self.connection.settimeout(timeout)

        def log_message(self, format: str, *args: Any) -> None:  # the library never prints
            return

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if urlparse(self.path).path == "/health":
                self._reply(200, service.health())
            else:
                self._reply(404, {"error": f"no such endpoint {self.path}"})

        def do_POST(self) -> None:
            url = urlparse(self.path)
            if url.path != "/search":
                self._reply(404, {"error": f"no such endpoint {url.path}"})
                return
            try:
                length = int(self.headers.get("Content-Length", "-1"))
                if length < 0:
                    raise RequestError(411, "Content-Length: required")
                if length > max_bytes:
                    raise RequestError(413, f"body: {length} bytes, more than the limit of "
                                            f"{max_bytes}")
                body = self.rfile.read(length)
                query = parse_qs(url.query)
                top_k = int(query.get("top_k", [service.top_k])[0])
                kind = self.headers.get("Content-Type", "").split(";")[0].strip()
                if kind == "application/json":
                    try:
                        doc = json.loads(body)
                        frames = [base64.b64decode(f, validate=True) for f in doc["frames"]]
                        top_k = int(doc.get("top_k", top_k))
                    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
                        raise RequestError(400, "body: expected JSON {\"frames\": [base64 "
                                                f"images], \"top_k\": K}} ({exc})") from exc
                    answer = service.search_frames(frames, top_k)
                else:
                    answer = service.search_video(body, top_k)
                self._reply(200, answer)
            except RequestError as exc:
                self._reply(exc.status, {"error": str(exc)})
            except ValueError as exc:
                self._reply(400, {"error": str(exc)})

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server
