"""Own captures end to end: fern's photos through ``python -m nerfexp.process``, then the same training budget on the
published LLFF data and on the processed capture (``dataset=colmap``, in the box and in NDC); and a video rendered
from known cameras (the demo objects in a textured room), processed and trained.

    python benchmarks/capture_training.py --fern ../shared/data/nerf_llff_data/fern --seconds 300 \\
        --video-seconds 120 --out /tmp/capture_bench

Each training is ``train.py`` with its defaults (``model=ngp``) for ``--seconds`` of training (no step limit), one
after the other; the test PSNR is ``summary.json``'s. The video's known cameras give the centre error of its poses.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import imageio.v2 as iio2
import numpy as np

from nerfexp.data.capture import process_capture
from nerfexp.data.demo_capture import box_blur, orbit_cameras, render_capture
from nerfexp.data.llff import read_poses_bounds
from nerfexp.studies.pose_error import centre_errors

ROOT = Path(__file__).resolve().parent.parent


def train(name: str, overrides: list[str], seconds: float, out: Path) -> dict:
    run_dir = out / name
    args = [sys.executable, str(ROOT / "train.py"), *overrides, f"trainer.max_time_s={seconds}",
            "trainer.max_steps=100000000", "logger=none", f"hydra.run.dir={run_dir}"]
    with (out / f"{name}.log").open("w") as log:
        subprocess.run(args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, check=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    print(f"{name}: test PSNR {summary['test_psnr']:.2f} dB on {len(summary['splits']['test'])} test views, val "
          f"{summary['val_psnr']:.2f} dB, {summary['steps']} steps in {summary['train_time_s']:.0f} s "
          f"({' '.join(overrides)})", flush=True)
    return summary


def video_capture(out: Path, n_views: int, size: tuple[int, int]) -> tuple[Path, np.ndarray]:
    """An orbit video of the demo objects in the textured room: each of ``n_views`` sharp views on a rising arc
    is followed by two blurred frames, so the sharpest frame of window k is view k (its camera is known)."""
    c2w = orbit_cameras(n_views, radius=3.0, elevation_deg=25.0, arc_deg=120.0)  # a walk part-way round
    c2w[:, 2, 3] += 0.4 * np.sin(np.linspace(0, 2 * math.pi, n_views))
    focal = 0.5 * size[0] / math.tan(0.5 * 0.9)
    frames = [f for image in render_capture(c2w, size[0], size[1], focal)
              for f in (image, box_blur(image, 2), box_blur(image, 4))]
    path = out / "orbit.mp4"
    iio2.mimwrite(path, frames, fps=15, macro_block_size=1, quality=9)
    return path, c2w


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fern", type=Path, default=Path("data/nerf_llff_data/fern"))
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--video-seconds", type=float, default=120.0)
    parser.add_argument("--views", type=int, default=30, help="sharp views in the video (3 frames each)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--skip-fern", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    if not args.skip_fern:
        t0 = time.perf_counter()
        fern_out = args.out / "fern_processed"
        result = process_capture(args.fern / "images_8", fern_out, max_size=None, overwrite=True)
        print(f"process fern images_8: {result.line()} in {time.perf_counter() - t0:.1f} s", flush=True)
        results["llff"] = train("llff", ["dataset=llff", f"dataset.root={args.fern.resolve()}"], args.seconds, args.out)
        results["colmap"] = train("colmap", ["dataset=colmap", f"dataset.root={fern_out}"], args.seconds, args.out)
        results["colmap_ndc"] = train("colmap_ndc", ["dataset=colmap", f"dataset.root={fern_out}", "dataset.ndc=true"],
                                      args.seconds, args.out)
    video, c2w = video_capture(args.out, args.views, (320, 240))
    t0 = time.perf_counter()
    processed = args.out / "video_processed"
    result = process_capture(video, processed, num_frames=args.views, max_size=None, overwrite=True)
    names = sorted(p.name for p in (processed / "images").iterdir())
    solved, _, _ = read_poses_bounds(processed / "poses_bounds.npy")
    known = c2w[[int(n.split("_")[1].split(".")[0]) for n in names]]  # frame of window k = view k
    errors = centre_errors(solved[:, :3, 3], known[:, :3, 3])
    print(f"process video ({3 * args.views} frames, {args.views} kept): {result.line()} in "
          f"{time.perf_counter() - t0:.1f} s; camera centres vs the known ones: median {100 * errors['median']:.2f}%, "
          f"max {100 * errors['max']:.2f}% of the largest camera distance", flush=True)
    results["video_process"] = {"line": result.line(), "registered": result.registered, "total": result.total,
                                "centre_errors": errors}
    results["video"] = train("video", ["dataset=colmap", f"dataset.root={args.out / 'video_processed'}"],
                             args.video_seconds, args.out)
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
