#!/usr/bin/env python
"""One prepared GPU check (under 5 minutes on one GPU): does the CUDA path work, and how fast?

1. The training CLI on CUDA: a tiny synthetic run (tiny backbone, one short epoch), with
   ``--device cuda`` and ``--device auto`` in bf16, and ``--device cuda`` in fp16 (the
   gradient scaler); each must exit 0 and write
   ``metrics.json`` and a ``checkpoint.pt`` that loads with ``weights_only=True``.
2. bf16 training-step throughput at the paper's shapes (CLIP ViT-B/16, 288x144, T = 10,
   4 identities x 2 clips x 2 modalities = 16 clips per step, random-init weights): the full
   X-ReID step (forward, every Eq. 10 loss, backward, Adam, memory update) against the
   backbone alone (forward, trivial loss, backward, Adam).
3. Feature-extraction throughput (eval mode, no grad, bf16) of the full model.

Prints a small table and writes every number to ``--output`` (JSON).

    python benchmarks/gpu_check.py --output gpu_check.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", default="gpu_check.json", help="JSON file for the results")
    ap.add_argument("--steps", type=int, default=10, help="timed training steps per case")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--identities", type=int, default=232,
                    help="classifier/memory size (HITSZ-VCM training identities)")
    ap.add_argument("--extract-batch", type=int, default=32, help="clips per extraction batch")
    ap.add_argument("--skip-cli", action="store_true", help="only the throughput measurements")
    ap.add_argument("--smoke", action="store_true",
                    help="check the script itself on the CPU: tiny backbone, small shapes, no "
                    "CLI runs (the numbers mean nothing)")
    return ap.parse_args(argv)


def run_cli(device: str, data_root: Path, out: Path, amp: str = "bf16") -> dict:
    cmd = [sys.executable, str(ROOT / "examples" / "train_vvi.py"), "--no-progress",
           "--device", device, "--amp", amp, "--root", str(data_root),
           "--output-dir", str(out), "--synthetic-train-ids", "8", "--synthetic-test-ids", "6",
           "--img-size", "64", "32", "--num-frames", "4", "--ids-per-batch", "4",
           "--clips-per-modality", "1", "--epochs", "1", "--iters-per-epoch", "5",
           "--no-eval-before", "--overwrite"]
    t0 = time.perf_counter()
    # the repository's xreid, whether or not (or wherever) the package is installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    seconds = time.perf_counter() - t0
    ok = proc.returncode == 0 and (out / "metrics.json").is_file()
    result = {"device": device, "amp": amp, "returncode": proc.returncode,
              "seconds": round(seconds, 2), "ok": ok}
    if ok:
        state = torch.load(out / "checkpoint.pt", weights_only=True, map_location="cpu")
        result["checkpoint_epoch"] = state["epoch"]
        result["rank1_i2v"] = json.loads((out / "metrics.json").read_text())["after"]["i2v"][
            "rank1"]
    else:
        result["stderr_tail"] = proc.stderr[-2000:]
    return result


def timed(fn, steps: int, warmup: int, dev: torch.device) -> float:
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    sync()
    return (time.perf_counter() - t0) / steps


def throughput(args: argparse.Namespace) -> dict:
    from xreid import INFRARED, VISIBLE, XReID, XReIDLoss, build_backbone

    if args.smoke:
        dev, name, img, t, ids, clips = torch.device("cpu"), "tiny", (32, 16), 2, 2, 1
    else:
        dev = torch.device("cuda", torch.cuda.current_device())
        name, img, t, ids, clips = "clip-vit-b16", (288, 144), 10, 4, 2
    torch.manual_seed(0)
    backbone = build_backbone(name, img_size=img, num_cameras=12)
    model = XReID.from_preset(backbone, args.identities, "paper").to(dev).train()
    loss_fn = XReIDLoss.paper()
    c, d = args.identities, model.memory.visible.shape[1]
    feats = torch.nn.functional.normalize(torch.randn(2 * c, d, device=dev), dim=1)
    model.memory.initialize(feats, torch.arange(c, device=dev).repeat(2),
                            torch.tensor([VISIBLE] * c + [INFRARED] * c, device=dev))
    per_mod = ids * clips
    b = 2 * per_mod
    video = torch.randn(b, t, 3, *img, device=dev)
    labels = torch.arange(ids, device=dev).repeat_interleave(clips).repeat(2)
    modality = torch.tensor([VISIBLE] * per_mod + [INFRARED] * per_mod, device=dev)
    cameras = torch.zeros(b, dtype=torch.long, device=dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-6)

    def full_step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            out = model(video, modality, cameras, labels)
            loss = loss_fn(out, labels, model.memory).total
        loss.backward()
        opt.step()
        model.memory.update(out.memory_feature.detach().float(), labels, modality)

    bb_opt = torch.optim.Adam(model.backbone.parameters(), lr=1e-6)

    def backbone_step() -> None:
        bb_opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            out = model.backbone(video, cameras)
            loss = out.tokens.float().mean() + out.projected.float().mean()
        loss.backward()
        bb_opt.step()

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    full_s = timed(full_step, args.steps, args.warmup, dev)
    full_mem = torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else 0.0
    bb_s = timed(backbone_step, args.steps, args.warmup, dev)

    model.eval()
    ex_video = torch.randn(args.extract_batch, t, 3, *img, device=dev)
    ex_mod = torch.tensor([VISIBLE, INFRARED], device=dev).repeat(args.extract_batch // 2 + 1)[
        : args.extract_batch]
    ex_cam = torch.zeros(args.extract_batch, dtype=torch.long, device=dev)

    @torch.no_grad()
    def extract() -> None:
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            model(ex_video, ex_mod, ex_cam)

    ex_s = timed(extract, args.steps, args.warmup, dev)
    return {
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu (smoke)",
        "shapes": {"img_size": list(img), "num_frames": t, "clips_per_step": b,
                   "identities": args.identities},
        "train_step_full_s": full_s,
        "train_step_backbone_s": bb_s,
        "train_full_over_backbone": full_s / bb_s,
        "train_clips_per_s_full": b / full_s,
        "train_clips_per_s_backbone": b / bb_s,
        "train_peak_memory_gib": full_mem,
        "extract_batch": args.extract_batch,
        "extract_clips_per_s": args.extract_batch / ex_s,
        "extract_frames_per_s": args.extract_batch * t / ex_s,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # measure the repository's xreid
    if not torch.cuda.is_available() and not args.smoke:
        print("gpu_check.py: error: no CUDA device is available; this check needs one GPU "
              "(nothing was measured)", file=sys.stderr)
        return 1
    results: dict = {"torch": torch.__version__}
    if not args.skip_cli and not args.smoke:
        with tempfile.TemporaryDirectory(prefix="xreid-gpu-check-") as tmp:
            data = Path(tmp) / "data"
            runs = (("cuda", "bf16"), ("auto", "bf16"), ("cuda", "fp16"))  # fp16: GradScaler
            results["cli"] = [run_cli(dev, data, Path(tmp) / f"run-{dev}-{amp}", amp)
                              for dev, amp in runs]
    results["throughput"] = throughput(args)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")

    print(f"\nGPU check ({results['throughput']['gpu']}, torch {torch.__version__})")
    for run in results.get("cli", []):
        print(f"  CLI --device {run['device']:<5} --amp {run['amp']} tiny: "
              f"{'ok' if run['ok'] else 'FAILED (rc ' + str(run['returncode']) + ')'}"
              f" in {run['seconds']:.1f} s")
    tp = results["throughput"]
    sh = tp["shapes"]
    case = f"case ({sh['img_size'][0]}x{sh['img_size'][1]}, T={sh['num_frames']}, bf16)"
    clips = f"{sh['clips_per_step']} clips"
    print(f"  {case:<40} {'s/step':>8} {'clips/s':>9}")
    print(f"  {'train step, full X-ReID (' + clips + ')':<40} {tp['train_step_full_s']:>8.3f} "
          f"{tp['train_clips_per_s_full']:>9.1f}")
    print(f"  {'train step, backbone alone (' + clips + ')':<40} "
          f"{tp['train_step_backbone_s']:>8.3f} {tp['train_clips_per_s_backbone']:>9.1f}")
    ex_s = tp["extract_batch"] / tp["extract_clips_per_s"]
    print(f"  {'feature extraction (' + str(tp['extract_batch']) + ' clips)':<40} "
          f"{ex_s:>8.3f} {tp['extract_clips_per_s']:>9.1f}")
    print(f"  full / backbone step time: {tp['train_full_over_backbone']:.3f}; "
          f"peak memory {tp['train_peak_memory_gib']:.1f} GiB; wrote {args.output}")
    failed = [r["device"] for r in results.get("cli", []) if not r["ok"]]
    if failed:
        for r in results["cli"]:
            if not r["ok"]:
                print(f"--- CLI --device {r['device']} --amp {r['amp']} stderr ---\n"
                      f"{r['stderr_tail']}",
                      file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
