"""COLMAP through ``python -m nerfexp.process`` on fern's ``images_8`` against the published ``poses_bounds.npy``:
time, images registered, reprojection error, and camera-centre error after a similarity alignment.

    python benchmarks/process_fern.py --fern ../shared/data/nerf_llff_data/fern

The centre error is given as a fraction of the published cameras' spread, measured two ways: the largest distance
between two cameras, and the RMS distance of the cameras from their centroid.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from nerfexp.data.capture import process_capture
from nerfexp.data.llff import read_poses_bounds
from nerfexp.studies.pose_error import centre_errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fern", type=Path, default=Path("data/nerf_llff_data/fern"))
    parser.add_argument("--images", default="images_8")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = process_capture(args.fern / args.images, Path(tmp) / "fern", max_size=None)
        wall = time.perf_counter() - t0
        solved, _, _ = read_poses_bounds(Path(tmp) / "fern" / "poses_bounds.npy")
    known, _, _ = read_poses_bounds(args.fern / "poses_bounds.npy")
    errors = centre_errors(solved[:, :3, 3], known[:, :3, 3])
    centres = known[:, :3, 3]
    rms = float(np.sqrt(((centres - centres.mean(0)) ** 2).sum(1).mean()))
    to_rms = errors["spread"] / rms
    print(result.line())
    print(f"wall {wall:.1f} s ({', '.join(f'{k} {v:.1f} s' for k, v in result.seconds.items())})")
    print(f"camera centres vs poses_bounds.npy: median {100 * errors['median']:.2f}% / max {100 * errors['max']:.2f}% "
          f"of the largest camera distance; median {100 * errors['median'] * to_rms:.2f}% / max "
          f"{100 * errors['max'] * to_rms:.2f}% of the RMS distance to the centroid")


if __name__ == "__main__":
    main()
