"""Data-pipeline throughput: decoded + transformed frames per second in one worker process.

Writes a small synthetic HITSZ-VCM dataset with realistic 256x128 JPEG frames, then times
``VideoClipDataset`` items (10-frame clips at 288x144) in a single process with one torch
thread, as one DataLoader worker would run them. Target: >= 300 frames/s per core, so 16
workers feed a GPU with > 4,000 frames/s.

    python benchmarks/bench_data.py [--frames 256x128] [--seconds 5] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from xreid.data import (
    HITSZVCM,
    ClipTransform,
    VideoClipDataset,
    load_frame,
    make_synthetic_hitsz_vcm,
)

TARGET = 300.0


def _rate(fn, frames_per_call: int, seconds: float) -> float:
    fn()  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return n * frames_per_call / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", default="256x128", help="JPEG size on disk, HxW")
    ap.add_argument("--seconds", type=float, default=4.0, help="time per measurement")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers for the "
                    "aggregate measurement (0 skips it)")
    args = ap.parse_args()
    h, w = (int(v) for v in args.frames.lower().split("x"))
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        root = make_synthetic_hitsz_vcm(Path(tmp) / "vcm", num_train_ids=4, num_test_ids=2,
                                        tracklets_per_id=2, test_tracklets_per_id=2,
                                        frames=(20, 24), num_short=0, img_size=(h, w))
        gen_s = time.perf_counter() - t0
        ds = HITSZVCM(root)
        train = ds.train
        n_files = sum(len(t.frames) for t in train)
        print(f"data: {len(train)} tracklets, {n_files} JPEGs of {h}x{w} "
              f"(generated in {gen_s:.1f} s)")
        T, size = 10, (288, 144)
        rows: list[tuple[str, float]] = []

        paths = [f for t in train for f in t.frames]
        k = [0]

        def decode(resize: bool) -> None:
            load_frame(paths[k[0] % len(paths)], size if resize else None)
            k[0] += 1

        rows.append((f"decode only ({h}x{w} JPEG, Pillow)",
                     _rate(lambda: decode(False), 1, args.seconds)))
        rows.append(("decode + Pillow bilinear resize (reference)",
                     _rate(lambda: decode(True), 1, args.seconds)))

        clip_u8 = torch.randint(0, 256, (T, 3, *size), dtype=torch.uint8)
        tf_train = ClipTransform(size, train=True)
        g = torch.Generator().manual_seed(0)
        rows.append(("train transform only (flip, crop, erase, norm)",
                     _rate(lambda: tf_train(clip_u8, g), T, args.seconds)))

        for name, sampling, tf in (
            ("train item: restricted_random + train tf", "restricted_random", tf_train),
            ("eval item: chunk_first + eval tf", "chunk_first", ClipTransform(size)),
        ):
            dset = VideoClipDataset(train, num_frames=T, sampling=sampling, transform=tf)
            i = [0]

            def item(dset: VideoClipDataset = dset, i: list[int] = i) -> None:
                dset[i[0] % len(dset)]
                i[0] += 1

            rows.append((name, _rate(item, T, args.seconds)))

        if args.workers > 0:
            dset = VideoClipDataset(train * 8, num_frames=T, sampling="restricted_random",
                                    transform=tf_train)
            loader = torch.utils.data.DataLoader(dset, batch_size=8, shuffle=True,
                                                 num_workers=args.workers,
                                                 persistent_workers=True)
            it = iter(loader)
            next(it)
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < args.seconds:
                try:
                    b = next(it)
                except StopIteration:
                    it = iter(loader)
                    continue
                n += b["video"].shape[0] * T
            rows.append((f"DataLoader, {args.workers} workers (aggregate)",
                         n / (time.perf_counter() - t0)))

    print(f"\nframes/s at {size[0]}x{size[1]}, one process, torch threads=1 "
          f"(target >= {TARGET:.0f} per core)")
    print(f"{'case':<50} {'frames/s':>10}")
    print("-" * 61)
    for name, r in rows:
        print(f"{name:<50} {r:>10.0f}")


if __name__ == "__main__":
    main()
