"""Optional C++/OpenMP CPU kernels: the fast path's hash-grid encoding and occupancy marching, NeuS's softplus.

Built by torch's extension loader on first use and cached (``TORCH_EXTENSIONS_DIR``, default
``~/.cache/torch_extensions``). Where they cannot be built (no C++ compiler or ninja), :func:`cpu_kernels` returns
None once, with one warning, and callers use their pure-PyTorch code, which computes the same thing.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)

_KERNELS = None  # the compiled module; False once building it failed
HASH_FEATURES = (1, 2, 4, 8)  # features per level the hash-grid kernels are compiled for (cpu.cpp's dispatch)


def cpu_kernels():
    """The compiled kernel module, or None where it cannot be built."""
    global _KERNELS
    if _KERNELS is None:
        try:
            from torch.utils.cpp_extension import load

            start = time.perf_counter()
            log.info("loading the C++ CPU kernels (the first time: building them, about a minute)")
            # no-trapping-math: no code here reads floating-point exception flags, and without it GCC keeps the
            # branches of the softplus loop's selects, which then does not vectorise
            _KERNELS = load("nerfexp_cpu_kernels", [str(Path(__file__).with_name("cpu.cpp"))],
                            extra_cflags=["-O3", "-fopenmp", "-fno-trapping-math"], extra_ldflags=["-fopenmp"],
                            verbose=False)
            log.info("C++ CPU kernels ready in %.1f s", time.perf_counter() - start)
        except Exception as err:  # no compiler, headers or ninja: the pure-PyTorch paths still work
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            log.warning("CPU kernels did not build (%s); using the pure-PyTorch code", message)
            _KERNELS = False
    return _KERNELS or None


def prepare_cpu_kernels(module, device) -> None:
    """Build (first use) or load the kernels now when ``module`` runs on the CPU with a submodule that uses them
    (``use_cpu_kernel``), so the one-time build never lands inside a timed training step or render."""
    if getattr(device, "type", device) == "cpu" and any(getattr(m, "use_cpu_kernel", False)
                                                        for m in module.modules()):
        cpu_kernels()
