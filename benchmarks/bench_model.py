"""Head overhead of the full X-ReID model over its backbone (forward + backward).

Paper shapes by default: CLIP ViT-B/16 at 288x144 (163 tokens), fp32, CPU. The full model
runs the backbone, CPCL against a memory of C identities, SII + LII + CII, BNNeck heads and
every Eq. 10 loss, then the memory update; the reference runs the backbone alone with a
trivial loss on its outputs. Target: ratio <= 1.10.

    python benchmarks/bench_model.py            # ViT-B/16, 2 clips x 2 frames
    python benchmarks/bench_model.py --quick    # tiny backbone
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import compare, print_table, set_threads

from xreid import INFRARED, VISIBLE, XReID, XReIDLoss, build_backbone


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="tiny backbone, small input")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pairs", type=int, default=1, help="visible/infrared clip pairs")
    ap.add_argument("--frames", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--identities", type=int, default=500)
    args = ap.parse_args()
    set_threads(args.threads)
    torch.manual_seed(0)
    name, img = ("tiny", (64, 32)) if args.quick else ("clip-vit-b16", (288, 144))
    backbone = build_backbone(name, img_size=img, num_cameras=12)
    model = XReID.from_preset(backbone, args.identities, "paper").train()
    loss_fn = XReIDLoss.paper()
    c, d = args.identities, model.memory.visible.shape[1]
    feats = torch.nn.functional.normalize(torch.randn(2 * c, d), dim=1)
    labels_all = torch.arange(c).repeat(2)
    mod_all = torch.tensor([VISIBLE] * c + [INFRARED] * c)
    model.memory.initialize(feats, labels_all, mod_all)

    p, t = args.pairs, args.frames
    video = torch.randn(2 * p, t, 3, *img)
    labels = torch.arange(p).repeat(2)
    modality = torch.tensor([VISIBLE] * p + [INFRARED] * p)
    cameras = torch.zeros(2 * p, dtype=torch.long)

    def full() -> None:
        model.zero_grad(set_to_none=True)
        out = model(video, modality, cameras, labels)
        loss_fn(out, labels, model.memory).total.backward()
        model.memory.update(out.memory_feature.detach(), labels, modality)

    def backbone_only() -> None:
        model.zero_grad(set_to_none=True)
        out = model.backbone(video, cameras)
        (out.tokens.mean() + out.projected.mean()).backward()

    c_s, r_s, ratio = compare(full, backbone_only, rounds=args.rounds, warmup=1)
    print_table(
        [(f"{name} {img[0]}x{img[1]}, {2 * p} clips x {t} frames", c_s, r_s, ratio, "<= 1.10")],
        f"full X-ReID fwd+bwd vs backbone alone (CPU fp32, {args.threads} threads)",
    )


if __name__ == "__main__":
    main()
