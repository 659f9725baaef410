"""What the live viewer costs a training run: the same preset trained for ``--seconds`` of training three times,
one after the other: ``off`` without the viewer, ``closed`` with ``trainer.viewer=true`` and no browser,
``remote``: a client speaking the viewer's websocket protocol, as a browser on another computer would (the usual
case, over ``ssh -L``): it orbits the camera every few seconds and receives every frame but draws nothing, so the
training machine pays only for what the viewer itself does; and ``open``: a headless Chromium on this machine whose
camera orbits every few seconds (its software WebGL shares the two training cores). Then screenshots of the viewer
during training and of ``python -m nerfexp.view`` on the finished run.

    python benchmarks/viewer_overhead.py --seconds 120 --out /tmp/viewer_bench -- \\
        experiment=lego_fast dataset.root=../shared/data/nerf_synthetic/lego

Prints, per arm: steps, training rays/s (rays per second of optimisation steps), wall rays/s (rays per second of
the whole training loop, viewer included), seconds spent rendering for the viewer, final validation PSNR.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import msgspec
import numpy as np
import viser
from viser.transforms import SO3

from nerfexp.view.browser import browser_unavailable, orbit, screenshot, viewer_page

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}", timeout=2):
            return True
    except OSError:
        return False


def wait_listening(port: int, proc: subprocess.Popen, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while not listening(port):
        if proc.poll() is not None:
            raise RuntimeError(f"the process exited ({proc.returncode}) before its viewer listened on {port}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no viewer on port {port} after {timeout_s:.0f} s")
        time.sleep(0.5)


def look_at_camera(angle: float, radius: float, elevation: float, fov: float, size: tuple[int, int]) -> dict:
    """viser's camera message for a camera on a circle about the z axis looking at the origin (z up)."""
    pos = radius * np.array([math.cos(angle) * math.cos(elevation), math.sin(angle) * math.cos(elevation),
                             math.sin(elevation)])
    z = -pos / np.linalg.norm(pos)  # OpenCV: +z forward, +y down
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    wxyz = SO3.from_matrix(np.stack([x, y, z], axis=1)).wxyz
    return {"type": "ViewerCameraMessage", "wxyz": [float(v) for v in wxyz], "position": [float(v) for v in pos],
            "fov": fov, "near": 0.01, "far": 1000.0, "image_height": size[1], "image_width": size[0],
            "look_at": [0.0, 0.0, 0.0], "up_direction": [0.0, 0.0, 1.0]}


async def protocol_browser(port: int, proc: subprocess.Popen, size: tuple[int, int] = (640, 480),
                           radius: float = 4.0) -> int:
    """Be a browser on another computer until ``proc`` ends: send a camera that orbits every 5 s (a drag of five
    small moves) and take every message the viewer sends; returns how many message windows arrived."""
    import websockets

    received = 0
    try:
        async with websockets.connect(f"ws://127.0.0.1:{port}", subprotocols=[f"viser-v{viser.__version__}"],
                                      max_size=None) as ws:
            async def take() -> None:
                nonlocal received
                async for _ in ws:
                    received += 1

            reader = asyncio.create_task(take())
            angle = 0.0
            await ws.send(msgspec.msgpack.encode(look_at_camera(angle, radius, 0.5, 0.69, size)))
            while proc.poll() is None:
                await asyncio.sleep(5.0)
                for _ in range(5):
                    angle += 0.05
                    await ws.send(msgspec.msgpack.encode(look_at_camera(angle, radius, 0.5, 0.69, size)))
                    await asyncio.sleep(0.05)
            reader.cancel()
    except websockets.ConnectionClosed:  # training ended and its viewer with it
        pass
    return received


def train_arm(name: str, overrides: list[str], out: Path, seconds: float) -> dict:
    run_dir = out / name
    port = free_port()
    args = [sys.executable, str(ROOT / "train.py"), *overrides, f"trainer.max_time_s={seconds}",
            "trainer.eval_at_end=false", "logger=none", f"hydra.run.dir={run_dir}"]
    if name != "off":
        args += ["trainer.viewer=true", f"viewer.port={port}"]
    log = (out / f"{name}.log").open("w")
    t0 = time.monotonic()
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    if name == "remote":
        wait_listening(port, proc)
        summary_frames = asyncio.run(protocol_browser(port, proc))
    if name == "open":
        wait_listening(port, proc)
        with viewer_page(port) as page:
            k = 0
            while proc.poll() is None:
                time.sleep(1.0)
                k += 1
                if k % 5 == 0:
                    orbit(page, 60)  # a user looking around now and then
                if k in (40, 90) or (k > 90 and k % 30 == 0):
                    screenshot(page, out / "screenshots" / f"{name}_training_{k:04d}s.png")
    proc.wait()
    log.close()
    if proc.returncode != 0:
        raise RuntimeError(f"arm {name}: train.py exited with {proc.returncode}; see {out / f'{name}.log'}")
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["process_wall_s"] = time.monotonic() - t0
    if name == "remote":
        summary["remote_messages_received"] = summary_frames
    return summary


def view_screenshot(run_dir: Path, out: Path, wait_s: float) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "nerfexp.view", f"run={run_dir}", f"port={port}",
                             f"duration_s={wait_s + 120}"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, proc)
        with viewer_page(port) as page:
            time.sleep(wait_s)  # the coarse frame at once, then the refinements
            screenshot(page, out / "screenshots" / "view_after_training.png")
            orbit(page, 120)
            time.sleep(wait_s)
            screenshot(page, out / "screenshots" / "view_after_training_orbited.png")
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=120.0, help="seconds of training per arm")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--arms", default="off,closed,remote,open", help="which arms, in this order")
    parser.add_argument("--view-wait", type=float, default=25.0, help="seconds before each view-mode screenshot")
    parser.add_argument("overrides", nargs="*", help="train.py overrides (after --)")
    args = parser.parse_args()
    reason = browser_unavailable()
    if reason is not None and "open" in args.arms.split(","):
        sys.exit(f"the open arm needs a headless browser: {reason}")
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for arm in args.arms.split(","):
        results[arm] = train_arm(arm, args.overrides, args.out, args.seconds)
        s = results[arm]
        print(f"{arm:>6}: {s['steps']} steps, training {s['rays_per_s']:,.0f} rays/s, wall "
              f"{s['wall_rays_per_s']:,.0f} rays/s over {s['wall_s']:.1f} s, viewer rendering "
              f"{s.get('viewer_render_s', 0.0):.1f} s, val PSNR {s['val_psnr']:.2f} dB", flush=True)
    if "open" in results:
        view_screenshot(args.out / "open", args.out, args.view_wait)
    base = results.get("off")
    if base:
        for arm, s in results.items():
            print(f"{arm:>6} / off: training rays/s x{s['rays_per_s'] / base['rays_per_s']:.3f}, wall rays/s "
                  f"x{s['wall_rays_per_s'] / base['wall_rays_per_s']:.3f}")
    (args.out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
