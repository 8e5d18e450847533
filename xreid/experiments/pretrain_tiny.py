"""Pre-train the "tiny" backbone on a large synthetic pool (the shipped weights' recipe).

The pool is rendered in memory by both synthetic renderers: ``--ids`` identities by the
procedural renderer of ``xreid.data.synthetic`` (seed ``--pool-seed``, default 7_000_001) and
``--mannequin-ids`` by the mannequin renderer of ``xreid.data.mannequin`` (seed
``--pool-seed`` + 1), each in a seed stream the dataset generators never use, with more
cameras (10), stronger nuisances (difficulty 0.8), more occlusion (0.25) and shorter
tracklets (6 frames) than any evaluation dataset: it shares no identity, seed or generator
configuration with one. Every identity has ``--tracklets`` tracklets per modality, each in a
random camera; the two parts use disjoint camera indices. Frames go through JPEG (quality
90) as on disk.

``--val-ids`` identities of each renderer are held out. After each epoch, per renderer, their
infrared tracklets are ranked against their visible ones (I2V) and the reverse (V2I),
same-identity same-camera entries removed; the epoch with the best mean of the four mAPs is
the one written. Objective: identity cross-entropy (label smoothing 0.1, on BN-necked
features) + batch-hard triplet (margin 0.3) on both the [CLS] feature (D) and the projected
feature (d), each the temporal mean over the clip, optionally + a cross-modal InfoNCE
(``--contrastive-weight``).

The shipped file ``xreid/backbones/pretrained/tiny-synthetic.safetensors`` was written with
these defaults (about 16 minutes on one thread of a 2-core machine, rendering included)::

    OMP_NUM_THREADS=1 python examples/pretrain_tiny.py --threads 1 \\
        --output xreid/backbones/pretrained/tiny-synthetic.safetensors

(see docs/backbones.md "Pre-trained tiny weights" for the pool, the validation numbers and
the hash).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import sys
import time
import typing
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from xreid.backbones import build_backbone
from xreid.data import ClipTransform
from xreid.data._render import (
    render_background,
    render_frame,
    sample_camera,
    sample_identity,
    sample_scene,
)
from xreid.losses.triplet import batch_hard_triplet_loss
from xreid.metrics.ranking import evaluate_ranking

# a seed stream the dataset generators (streams 1..5 of default_rng([seed, stream, ...]))
# never use, so no pool identity, camera or scene coincides with an evaluation dataset's
_POOL_STREAM = 91

PROG = "pretrain_tiny.py"


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, exit code 2."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_pretrain_parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(prog=PROG, description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", required=True, help="safetensors file to write (must not exist "
                   "unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace --output")
    p.add_argument("--ids", type=int, default=600,
                   help="pool identities from the procedural renderer (incl. --val-ids)")
    p.add_argument("--mannequin-ids", type=int, default=600,
                   help="pool identities from the mannequin renderer (incl. --val-ids; 0: none)")
    p.add_argument("--val-ids", type=int, default=50,
                   help="held-out pool identities of each renderer")
    p.add_argument("--tracklets", type=int, default=3, help="tracklets per identity and modality")
    p.add_argument("--frames", type=int, default=6, help="frames per tracklet")
    p.add_argument("--cameras", type=int, default=10, help="pool cameras")
    p.add_argument("--difficulty", type=float, default=0.8, help="renderer nuisance level")
    p.add_argument("--occlusion", type=float, default=0.25, help="occluder probability")
    p.add_argument("--pool-seed", type=int, default=7_000_001,
                   help="seed of the pool (the mannequin part uses this + 1)")
    p.add_argument("--img-size", type=int, nargs=2, default=(64, 32), help="height width")
    p.add_argument("--epochs", type=int, default=36)
    p.add_argument("--iters", type=int, default=150, help="iterations per epoch")
    p.add_argument("--ids-per-batch", type=int, default=16)
    p.add_argument("--clip-len", type=int, default=2, help="frames per training clip")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--contrastive-weight", type=float, default=0.0,
                   help="weight of a cross-modal InfoNCE on the projected feature (0: off)")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--log", default=None, help="JSON lines log file (default: none)")
    return p


def render_pool(num_ids: int, tracklets: int, frames: int, num_cameras: int,
                difficulty: float, occlusion: float, seed: int, size: tuple[int, int]
                ) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray]:
    """-> frames (N, F, 3, H, W) uint8, pids (N,), modality (N,) 0 visible / 1 infrared,
    cameras (N,); ``tracklets`` per identity and modality, rows grouped by identity."""
    def rng(*keys: int) -> np.random.Generator:
        return np.random.default_rng([seed, _POOL_STREAM, *keys])

    cams = [sample_camera(rng(0, c), difficulty) for c in range(num_cameras)]
    plan = rng(1)
    out = np.empty((num_ids * 2 * tracklets, frames, size[0], size[1], 3), np.uint8)
    pids, mods, cameras = [], [], []
    row = 0
    for pid in range(num_ids):
        ident = sample_identity(rng(2, pid))
        for m in (0, 1):
            for k in range(tracklets):
                c = int(plan.integers(num_cameras))
                scene = sample_scene(rng(3, pid, m, k), frames, occlusion, difficulty)
                noise = rng(4, pid, m, k)
                bg = render_background(cams[c], scene, size)
                want = (m == 0, m == 1)
                for t in range(frames):
                    rgb, ir = render_frame(ident, cams[c], scene, t, size, noise, want, bg)
                    img = Image.fromarray(rgb, "RGB") if m == 0 else Image.fromarray(ir, "L")
                    out[row, t] = jpeg_round_trip(img)
                pids.append(pid)
                mods.append(m)
                cameras.append(c)
                row += 1
    video = torch.from_numpy(out).permute(0, 1, 4, 2, 3).contiguous()
    return video, np.array(pids), np.array(mods), np.array(cameras)


def render_mannequin_pool(num_ids: int, tracklets: int, frames: int, num_cameras: int,
                          difficulty: float, occlusion: float, seed: int,
                          size: tuple[int, int]
                          ) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`render_pool` with the frames of :class:`xreid.data.mannequin.MannequinRenderer`
    (seed ``seed``; tracklet key ``m * tracklets + k``, camera drawn per tracklet)."""
    from xreid.data.mannequin import MannequinRenderer

    renderer = MannequinRenderer(seed, size, num_cameras, occlusion, difficulty, quality=90)
    plan = np.random.default_rng([seed, _POOL_STREAM, 1])
    out = np.empty((num_ids * 2 * tracklets, frames, size[0], size[1], 3), np.uint8)
    pids, mods, cameras = [], [], []
    row = 0
    for pid in range(num_ids):
        for m in (0, 1):
            for k in range(tracklets):
                c = int(plan.integers(num_cameras))
                for t, (rgb, ir) in enumerate(renderer.render(pid, c, m * tracklets + k,
                                                              frames, (m == 0, m == 1))):
                    img = Image.fromarray(rgb, "RGB") if m == 0 else Image.fromarray(ir, "L")
                    out[row, t] = jpeg_round_trip(img)
                pids.append(pid)
                mods.append(m)
                cameras.append(c)
                row += 1
    video = torch.from_numpy(out).permute(0, 1, 4, 2, 3).contiguous()
    return video, np.array(pids), np.array(mods), np.array(cameras)


def jpeg_round_trip(img: Image.Image) -> np.ndarray:
    """``img`` through JPEG (quality 90), as the dataset writers store frames -> (H, W, 3)."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))


class Head(nn.Module):
    """BNNeck + identity classifier on the [CLS] (D) and projected (d) clip features."""

    def __init__(self, dims: tuple[int, int], num_ids: int) -> None:
        super().__init__()
        self.bns = nn.ModuleList(nn.BatchNorm1d(d) for d in dims)
        self.fcs = nn.ModuleList(nn.Linear(d, num_ids, bias=False) for d in dims)
        for bn in self.bns:
            bn.bias.requires_grad_(False)
        for fc in self.fcs:
            nn.init.normal_(fc.weight, std=0.001)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return [fc(bn(f)) for f, bn, fc in zip(feats, self.bns, self.fcs)]


def clip_features(backbone: nn.Module, video: torch.Tensor) -> list[torch.Tensor]:
    """(B, T, 3, H, W) -> [CLS mean (B, D), projected mean (B, d)]."""
    out = backbone(video)
    return [out.tokens[:, :, 0].mean(1), out.projected.mean(1)]


@torch.no_grad()
def validate(backbone: nn.Module, video: torch.Tensor, pids: np.ndarray, mods: np.ndarray,
             cams: np.ndarray, transform: ClipTransform) -> dict[str, float]:
    """Cross-modal mAP of the held-out identities (whole tracklets, concatenated features)."""
    backbone.eval()
    feats = []
    for i in range(0, len(video), 32):
        x = torch.stack([transform(v) for v in video[i:i + 32]])
        feats.append(F.normalize(torch.cat(clip_features(backbone, x), 1), dim=1))
    f = torch.cat(feats)
    backbone.train()
    res = {}
    for name, qm in (("i2v", 1), ("v2i", 0)):
        q, g = mods == qm, mods != qm
        dist = 1 - f[q] @ f[g].T
        r = evaluate_ranking(dist, pids[q], pids[g], cams[q], cams[g])
        res[name] = float(r.mAP)
    return res


def sample_batch(gen: np.random.Generator, by_pid: dict[int, list[np.ndarray]],
                 train_pids: np.ndarray, p: int, k: int) -> np.ndarray:
    """P identities x K tracklets per modality -> row indices (grouped [visible; infrared])."""
    chosen = gen.choice(train_pids, p, replace=False)
    rows = []
    for m in (0, 1):
        for pid in chosen:
            rows.extend(gen.choice(by_pid[int(pid)][m], k, replace=True))
    return np.array(rows)


def main(argv: list[str] | None = None) -> int:
    ns = build_pretrain_parser().parse_args(argv)
    out = Path(ns.output)
    if out.exists() and not ns.overwrite:
        print(f"{PROG}: error: --output {out} exists; pass --overwrite to replace it",
              file=sys.stderr)
        return 2
    if ns.mannequin_ids < 0:
        print(f"{PROG}: error: --mannequin-ids: expected >= 0, got {ns.mannequin_ids}",
              file=sys.stderr)
        return 2
    smallest = min(ns.ids, ns.mannequin_ids) if ns.mannequin_ids else ns.ids
    if not 1 <= ns.val_ids < smallest:
        print(f"{PROG}: error: --val-ids: expected 1..{smallest - 1}, got {ns.val_ids}",
              file=sys.stderr)
        return 2
    if ns.threads:
        torch.set_num_threads(ns.threads)
    torch.manual_seed(ns.seed)
    gen = np.random.default_rng(ns.seed)
    size = tuple(ns.img_size)
    log = open(ns.log, "a") if ns.log else None

    def emit(record: dict) -> None:
        print(json.dumps(record), flush=True)
        if log:
            log.write(json.dumps(record) + "\n")
            log.flush()

    t0 = time.time()
    video, pids, mods, cams = render_pool(ns.ids, ns.tracklets, ns.frames, ns.cameras,
                                          ns.difficulty, ns.occlusion, ns.pool_seed, size)
    val = pids >= ns.ids - ns.val_ids
    if ns.mannequin_ids:  # identities ns.ids.., cameras ns.cameras..
        v2, p2, m2, c2 = render_mannequin_pool(ns.mannequin_ids, ns.tracklets, ns.frames,
                                               ns.cameras, ns.difficulty, ns.occlusion,
                                               ns.pool_seed + 1, size)
        video = torch.cat([video, v2])
        val = np.concatenate([val, p2 >= ns.mannequin_ids - ns.val_ids])
        pids = np.concatenate([pids, p2 + ns.ids])
        mods = np.concatenate([mods, m2])
        cams = np.concatenate([cams, c2 + ns.cameras])
    emit({"event": "pool", "tracklets": len(video), "seconds": round(time.time() - t0, 1)})
    parts = {"procedural": np.flatnonzero(val & (pids < ns.ids))}
    if ns.mannequin_ids:
        parts["mannequin"] = np.flatnonzero(val & (pids >= ns.ids))
    train_pids = np.unique(pids[~val])
    # classifier rows 0..len(train_pids)-1
    label_of = np.full(int(pids.max()) + 1, -1)
    label_of[train_pids] = np.arange(len(train_pids))
    by_pid = {int(p): [np.flatnonzero((pids == p) & (mods == m)) for m in (0, 1)]
              for p in train_pids}

    backbone = build_backbone("tiny", img_size=size)
    head = Head((backbone.embed_dim, backbone.proj_dim), len(train_pids))
    params = list(backbone.parameters()) + [q for q in head.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=ns.lr, weight_decay=0.05)
    total = ns.epochs * ns.iters
    warm = ns.iters

    def lr_at(step: int) -> float:
        if step < warm:
            return ns.lr * (0.1 + 0.9 * step / warm)
        return ns.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    train_tf = ClipTransform(size, train=True, normalization="imagenet", pad=4)
    eval_tf = ClipTransform(size, train=False, normalization="imagenet")
    best, best_state, step = -1.0, None, 0
    for epoch in range(ns.epochs):
        sums: dict[str, float] = {}
        for _ in range(ns.iters):
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            rows = sample_batch(gen, by_pid, train_pids, ns.ids_per_batch, 2)
            starts = gen.integers(0, ns.frames - ns.clip_len + 1, len(rows))
            clips = torch.stack([
                train_tf(video[r, s:s + ns.clip_len], generator=int(gen.integers(2**62)))
                for r, s in zip(rows, starts)])
            labels = torch.from_numpy(label_of[pids[rows]])
            feats = clip_features(backbone, clips)
            logits = head(feats)
            loss_id = sum(F.cross_entropy(lg, labels, label_smoothing=0.1) for lg in logits)
            loss_tri = sum(batch_hard_triplet_loss(f, labels, 0.3) for f in feats)
            loss = loss_id + loss_tri
            terms = {"id": float(loss_id.detach()), "triplet": float(loss_tri.detach())}
            if ns.contrastive_weight > 0:
                z = F.normalize(feats[1], dim=1)
                n = len(rows) // 2  # [visible; infrared], same identity order
                sim = z[:n] @ z[n:].T / 0.1
                same = labels[:n, None] == labels[None, n:]
                lp = sim.log_softmax(1)
                lpt = sim.T.log_softmax(1)
                loss_c = -(lp[same].mean() + lpt[same.T].mean()) / 2
                loss = loss + ns.contrastive_weight * loss_c
                terms["contrastive"] = float(loss_c.detach())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            for key, v in terms.items():
                sums[key] = sums.get(key, 0.0) + v
        # each renderer's held-out identities ranked among themselves; score: the mean mAP
        record: dict[str, float] = {}
        for part, rows in parts.items():
            m = validate(backbone, video[rows], pids[rows], mods[rows], cams[rows], eval_tf)
            record.update({f"val_mAP_{part}_{d}": round(v, 4) for d, v in m.items()})
        score = sum(record.values()) / len(record)
        emit({"event": "epoch", "epoch": epoch + 1, **{k: round(v / ns.iters, 4)
              for k, v in sums.items()}, **record, "val_mean_mAP": round(score, 4),
              "seconds": round(time.time() - t0, 1)})
        if score > best:
            best = score
            best_state = {k: v.detach().clone().contiguous()
                          for k, v in backbone.canonical_state_dict().items()}
            best_epoch = epoch + 1
    from safetensors.torch import save_file

    assert best_state is not None
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"grid_size": f"{backbone.grid_size[0]}x{backbone.grid_size[1]}",
            "img_size": f"{size[0]}x{size[1]}", "epoch": str(best_epoch),
            "val_mean_mAP": f"{best:.4f}", "command": " ".join(sys.argv)}
    save_file(best_state, str(out), metadata=meta)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    emit({"event": "done", "best_epoch": best_epoch, "val_mean_mAP": round(best, 4),
          "sha256": digest, "seconds": round(time.time() - t0, 1)})
    return 0
