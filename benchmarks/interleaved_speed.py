"""Training steps per second of presets under two checkouts of nerfexp, measured interleaved in one run.

    python benchmarks/interleaved_speed.py --tree before=/path/to/old/checkout --tree after=. \
        --preset lego_tiny --preset lego_fast --slices 12 --steps 20 --root ../shared/data/nerf_synthetic/lego

For each preset, one worker process per tree builds the preset's trainer (from that tree's code and configs), trains
a few warm-up steps (kernel builds, first allocations), then the workers take turns: each trains ``--steps`` steps,
``--slices`` times, the first tree first in even slices and second in odd ones. Both trees are at the same training
step in every slice, so each slice gives a paired ratio (an occupancy grid empties as training goes on, and a shared
machine's load drifts: both cancel in the pair). The table reports median steps/s and the median paired ratio.
Two names may share one checkout and differ by config overrides:

    python benchmarks/interleaved_speed.py --tree pass=. --tree f2b=. --override pass=sampler.early_stop=density_pass \
        --preset lego_fast --root ../shared/data/nerf_synthetic/lego
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

WORKER = r'''
import sys, time
from pathlib import Path
from hydra import compose, initialize_config_dir
preset, root, run_dir, warmup, extra = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:]
with initialize_config_dir(config_dir=str(Path("conf").resolve()), version_base="1.3"):
    cfg = compose("train", overrides=[f"experiment={preset}", f"dataset.root={root}", "logger=none",
                                      "trainer.val_every=0", "trainer.ckpt_every=0", "trainer.ckpt_every_s=null",
                                      "trainer.eval_at_end=false", "trainer.max_time_s=null", *extra])
try:
    from nerfexp.runtime.allocator import keep_freed_memory
except ImportError:  # checkouts before the runtime/ package
    from nerfexp.allocator import keep_freed_memory
from nerfexp.train import Trainer
keep_freed_memory()
trainer = Trainer(cfg, Path(run_dir))
for _ in range(warmup):
    trainer.train_step()
print("ready", flush=True)
for line in sys.stdin:
    n = int(line)
    t0 = time.perf_counter()
    for _ in range(n):
        trainer.train_step()
    print(n / (time.perf_counter() - t0), flush=True)
'''


def start_worker(tree: Path, preset: str, root: Path, run_dir: Path, warmup: int,
                 overrides: list[str]) -> subprocess.Popen:
    # each checkout builds its C++ kernels in its own folder: torch names the module alike in both, and two trees
    # with different kernel sources would otherwise rebuild it under each other
    folder = "torch_extensions_" + str(tree.resolve()).strip("/").replace("/", "_")
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(run_dir.parent / folder)}
    proc = subprocess.Popen([sys.executable, "-c", WORKER, preset, str(root), str(run_dir), str(warmup), *overrides],
                            cwd=tree,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env)
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError(f"the {preset} worker in {tree} did not start")
    return proc


def timed(proc: subprocess.Popen, steps: int) -> float:
    proc.stdin.write(f"{steps}\n")
    proc.stdin.flush()
    return float(proc.stdout.readline())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", action="append", required=True, help="name=path of a checkout (give two)")
    parser.add_argument("--preset", action="append", required=True, help="an experiment preset, e.g. lego_tiny")
    parser.add_argument("--slices", type=int, default=12)
    parser.add_argument("--steps", type=int, default=20, help="training steps per slice")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--root", type=Path, required=True, help="the dataset root the presets train on")
    parser.add_argument("--override", action="append", default=[],
                        help="name=key=value: a config override for one tree's runs (two names may share a "
                             "checkout and differ by overrides)")
    args = parser.parse_args(argv)
    overrides: dict[str, list[str]] = {}
    for item in args.override:
        name, _, override = item.partition("=")
        overrides.setdefault(name, []).append(override)
    (first, first_tree), (second, second_tree) = [(n, Path(p).resolve()) for n, _, p in
                                                  (t.partition("=") for t in args.tree)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.preset:
            workers = {name: start_worker(tree, preset, args.root.resolve(), Path(tmp) / f"{name}-{preset}",
                                          args.warmup, overrides.get(name, []))
                       for name, tree in ((first, first_tree), (second, second_tree))}
            rates: dict[str, list[float]] = {first: [], second: []}
            for k in range(args.slices):
                for name in ((first, second) if k % 2 == 0 else (second, first)):
                    rates[name].append(timed(workers[name], args.steps))
                print(f"{preset} slice {k}: {first} {rates[first][-1]:.3f}, {second} {rates[second][-1]:.3f} steps/s",
                      flush=True)
            for proc in workers.values():
                proc.stdin.close()
                proc.wait()
            ratios = [b / a for a, b in zip(rates[first], rates[second])]
            rows.append((preset, statistics.median(rates[first]), statistics.median(rates[second]),
                         statistics.median(ratios)))
    print(f"\n| preset | {first} steps/s (median) | {second} steps/s (median) | {second}/{first} (median of "
          f"{args.slices} paired slices) |")
    print("|---|---|---|---|")
    for preset, a, b, ratio in rows:
        print(f"| {preset} | {a:.3f} | {b:.3f} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
