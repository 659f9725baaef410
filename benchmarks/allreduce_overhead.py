"""What data parallelism adds to a training step: the gradient all-reduce of a preset's pipeline, timed on 2 gloo
processes on this machine (median of ``--repeats``), beside that preset's parameter count.

    python benchmarks/allreduce_overhead.py experiment=lego_tiny dataset.root=../shared/data/nerf_synthetic/lego
"""
from __future__ import annotations

import os
import socket
import statistics
import sys
import time

import torch
import torch.multiprocessing as mp


def worker(rank: int, sizes: list[int], port: int, repeats: int, out) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from nerfexp.runtime.distributed import average_gradients, close_world, init_world

    world = init_world(torch.device("cpu"))
    params = [torch.nn.Parameter(torch.zeros(n)) for n in sizes]
    for p in params:
        p.grad = torch.randn(p.numel())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        average_gradients(params, world, [0.0])
        times.append(time.perf_counter() - t0)
    if rank == 0:
        out.put(statistics.median(times))
    close_world(world)


def main() -> None:
    from nerfexp.pipelines.build import build_pipeline
    from nerfexp.studies.bench import compose_config

    overrides = [a for a in sys.argv[1:] if "=" in a]
    cfg = compose_config(overrides, 60.0)
    sizes = [p.numel() for p in build_pipeline(cfg).parameters() if p.requires_grad]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    queue = mp.get_context("spawn").SimpleQueue()
    mp.start_processes(worker, args=(sizes, port, 50, queue), nprocs=2, start_method="spawn")
    seconds = queue.get()
    print(f"{' '.join(overrides)}: {sum(sizes):,} parameters in {len(sizes)} tensors; gradient all-reduce over 2 gloo "
          f"processes: {1000 * seconds:.2f} ms per step (median of 50)")


if __name__ == "__main__":
    main()
