"""Where a training step's time goes: stages (marching, pruning, field, rendering, backward, optimiser, grid
update) and kernels (hash encoding forward/backward, MLP matmuls), per step, after a warm-up.

    python benchmarks/profile_step.py experiment=lego_fast dataset.root=../shared/data/nerf_synthetic/lego

Warm-up steps first (the occupancy grid empties, samples per ray settle), then ``--steps`` steps timed by the clock
(median) and the same number under torch.profiler. Stage times are inclusive (the prune stage contains its hash
encoding); kernel times are exclusive. "Python and small ops" is the wall time no listed kernel accounts for.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from nerfexp.runtime.allocator import keep_freed_memory
from nerfexp.studies.bench import compose_config
from nerfexp.train import Trainer

KERNELS = {  # profiler op name -> what it is
    "_CPUKernelEncoding": "hash encoding forward",
    "_CPUKernelEncodingBackward": "hash encoding backward",
    "aten::mm": "MLP matmuls",
    "aten::addmm": "MLP matmuls",
    "aten::threshold_backward": "MLP matmuls",
    "aten::relu_": "MLP matmuls",
    "aten::_fused_adam_": "optimiser",
}


def wrap(obj, name: str, label: str) -> None:
    """Run ``obj.name`` inside a profiler region ``label``."""
    inner = getattr(obj, name)

    def wrapped(*args, **kwargs):
        with record_function(label):
            return inner(*args, **kwargs)
    setattr(obj, name, wrapped)


class TimedCall:
    """``target`` with its calls inside a profiler region ``label`` (attributes pass through)."""

    def __init__(self, target, label: str):
        self._target, self._label = target, label

    def __call__(self, *args, **kwargs):
        with record_function(self._label):
            return self._target(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._target, name)


def instrument(trainer: Trainer) -> list[str]:
    """Profiler regions around the pipeline's stages; returns their labels."""
    pipe = trainer.pipeline
    wrap(pipe.sampler, "sample", "stage: sampling (marching + pruning)")
    if hasattr(pipe.sampler, "prune_opaque"):
        wrap(pipe.sampler, "prune_opaque", "stage: pruning (no-grad density)")
    wrap(pipe.sampler, "update", "stage: sampler update (occupancy grid)")
    wrap(pipe, "query", "stage: field query (encoders + MLPs)")
    pipe.renderer = TimedCall(pipe.renderer, "stage: rendering (compositing)")
    wrap(trainer.optimizer, "step", "stage: optimiser step")
    original_backward = torch.Tensor.backward

    def backward(self, *args, **kwargs):
        with record_function("stage: backward"):
            return original_backward(self, *args, **kwargs)
    torch.Tensor.backward = backward
    return ["stage: sampling (marching + pruning)", "stage: pruning (no-grad density)",
            "stage: sampler update (occupancy grid)", "stage: field query (encoders + MLPs)",
            "stage: rendering (compositing)", "stage: backward", "stage: optimiser step"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", default=["experiment=lego_fast"])
    parser.add_argument("--warm-steps", type=int, default=300)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args(argv)
    keep_freed_memory()
    cfg = compose_config(args.overrides, 10 ** 6)
    with TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, Path(tmp) / "run")
        t0 = time.perf_counter()
        for _ in range(args.warm_steps):
            trainer.train_step()
        print(f"warm-up: {args.warm_steps} steps in {time.perf_counter() - t0:.1f} s")
        times = []
        for _ in range(args.steps):
            t = time.perf_counter()
            trainer.train_step()
            times.append(time.perf_counter() - t)
        step_s = statistics.median(times)
        state = trainer.pipeline.state()
        labels = instrument(trainer)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t = time.perf_counter()
            for _ in range(args.steps):
                trainer.train_step()
            profiled_s = (time.perf_counter() - t) / args.steps
        trainer.close()
    events = {e.key: e for e in prof.key_averages()}
    rays = cfg.trainer.batch_rays
    spr = state.get("samples_per_ray", float("nan"))
    print(f"\n{' '.join(args.overrides)}: median step {step_s * 1e3:.1f} ms = {rays / step_s:,.0f} rays/s, "
          f"{spr:.1f} samples/ray = {rays * spr / step_s:,.0f} points/s ({torch.get_num_threads()} threads)")
    print(f"profiled step {profiled_s * 1e3:.1f} ms (profiler overhead included)\n")
    print("| stage (inclusive) | ms/step | share |\n|---|---|---|")
    for label in labels:
        if label in events:
            ms = events[label].cpu_time_total / 1e3 / args.steps
            print(f"| {label.removeprefix('stage: ')} | {ms:.1f} | {ms / (profiled_s * 1e3):.0%} |")
    print("\n| kernel (exclusive) | ms/step | share |\n|---|---|---|")
    by_kind: dict[str, float] = {}
    for op, kind in KERNELS.items():
        if op in events:
            by_kind[kind] = by_kind.get(kind, 0.0) + events[op].self_cpu_time_total / 1e3 / args.steps
    for kind, ms in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"| {kind} | {ms:.1f} | {ms / (profiled_s * 1e3):.0%} |")
    rest = profiled_s * 1e3 - sum(by_kind.values())
    print(f"| Python and small ops (the rest) | {rest:.1f} | {rest / (profiled_s * 1e3):.0%} |")
    others = sorted((e for e in events.values() if e.key.startswith("aten::") and e.key not in KERNELS),
                    key=lambda e: -e.self_cpu_time_total)[:8]
    print("\nlargest other ops: " + ", ".join(f"{e.key} {e.self_cpu_time_total / 1e3 / args.steps:.1f} ms"
                                              for e in others))


if __name__ == "__main__":
    main()
