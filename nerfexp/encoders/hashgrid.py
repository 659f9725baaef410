"""Multiresolution hash encoding (Instant-NGP), with a pure-PyTorch backend and an optional tinycudann one.

The torch backend follows tinycudann's grid conventions, so the two agree on the same table: level ``l`` has
``scale = base * s**l - 1`` and ``resolution = ceil(scale) + 1``; a point ``x`` in [0, 1]^3 sits at
``x * scale + 0.5`` in grid units; a level is indexed densely while ``resolution**3`` fits in its table and by the
coherent prime hash ``(x * 1) ^ (y * 2654435761) ^ (z * 805459861)`` above; interpolation is trilinear.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import torch
from torch import Tensor, nn

from nerfexp.config import check_number
from nerfexp.encoders.tcnn_support import check_backend, require_tcnn, tcnn_available
from nerfexp.kernels import HASH_FEATURES, cpu_kernels

log = logging.getLogger(__name__)

PRIMES = (1, 2654435761, 805459861)


class _CPUKernelEncoding(torch.autograd.Function):
    """The CPU kernel as an autograd function: ``prefix`` ``(N, P)`` (P may be 0), then the encoding. Gradients
    flow to the table and to the prefix, not to the positions."""

    @staticmethod
    def forward(ctx, x01: Tensor, table: Tensor, enc: "HashGridEncoder", prefix: Tensor) -> Tensor:  # noqa: D102
        ctx.save_for_backward(x01)
        ctx.enc, ctx.rows, ctx.p_dim = enc, table.shape[0], prefix.shape[-1]
        return cpu_kernels().hash_forward(x01, table, *enc.layout_args(), prefix)

    @staticmethod
    def backward(ctx, grad: Tensor):  # noqa: D102
        (x01,) = ctx.saved_tensors
        p = ctx.p_dim
        grad_table = cpu_kernels().hash_backward(grad[:, p:], x01, ctx.rows, *ctx.enc.layout_args())
        return None, grad_table, None, grad[:, :p] if p else None


def level_layout(n_levels: int, log2_table_size: int, base_resolution: int,
                 per_level_scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per level: grid ``scale`` (float32), ``resolution``, table ``size`` and ``offset`` in the flat table.

    Scales are computed in float32 as tiny-cuda-nn does (``exp2(level * log2(per_level_scale)) * base - 1``), so
    the PyTorch, C++ and tinycudann backends put a point in the same cells."""
    max_size = 2 ** log2_table_size
    log2_scale = np.log2(np.float32(per_level_scale))
    scales = (np.exp2(np.arange(n_levels, dtype=np.float32) * log2_scale) * np.float32(base_resolution)
              - np.float32(1.0)).astype(np.float32)
    res = np.ceil(scales).astype(np.int64) + 1
    dense = res ** 3
    sizes = np.minimum((dense + 7) // 8 * 8, max_size)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return scales, res, sizes, offsets


class HashGridEncoder(nn.Module):
    """Hash-grid encoding of 3D points inside the box ``[-bound, bound]^3`` (points outside are clamped to it).

    Args:
        n_levels: number of resolution levels L.
        n_features: features per level F (output is ``L * F``).
        log2_table_size: log2 of the largest per-level table T.
        base_resolution: coarsest grid resolution.
        finest_resolution: finest grid resolution; sets ``per_level_scale`` when that is not given.
        per_level_scale: growth factor between levels.
        bound: half side of the scene box, in world units.
        backend: ``auto`` (tcnn on CUDA when importable, else torch), ``torch`` or ``tcnn``. On the CPU the torch
            backend runs a small C++/OpenMP kernel (built on first use) unless ``cpu_kernel=false`` or it cannot be
            built; it computes exactly what the pure-PyTorch code does.
        init_scale: table entries start uniform in ``[-init_scale, init_scale]``.
        in_dim: must be 3.
    """

    uses_footprint = False

    def __init__(self, n_levels: int = 16, n_features: int = 2, log2_table_size: int = 19, base_resolution: int = 16,
                 finest_resolution: int | None = 2048, per_level_scale: float | None = None, bound: float = 1.5,
                 backend: str = "auto", init_scale: float = 1e-4, cpu_kernel: bool = True, in_dim: int = 3):
        super().__init__()
        if in_dim != 3:
            raise ValueError(f"the hash grid encodes 3D points, got in_dim={in_dim}")
        check_backend(backend, "encoder.position.backend")
        for key, value, low in (("n_levels", n_levels, 1), ("n_features", n_features, 1),
                                ("log2_table_size", log2_table_size, 4), ("base_resolution", base_resolution, 2)):
            check_number(key, value, int, low=low)
        check_number("log2_table_size", log2_table_size, int, high=30)
        check_number("finest_resolution", finest_resolution, int, low=base_resolution, nullable=True)
        check_number("per_level_scale", per_level_scale, float, low=1.0, nullable=True)
        check_number("bound", bound, float, low=0, low_open=True)
        check_number("init_scale", init_scale, float, low=0)
        if per_level_scale is None:
            if finest_resolution is None or n_levels < 2:
                per_level_scale = 2.0
            else:
                per_level_scale = math.exp(math.log(finest_resolution / base_resolution) / (n_levels - 1))
        self.n_levels, self.n_features, self.bound = n_levels, n_features, float(bound)
        self.log2_table_size, self.base_resolution = log2_table_size, base_resolution
        self.per_level_scale = float(per_level_scale)
        scales, res, sizes, offsets = level_layout(n_levels, log2_table_size, base_resolution, self.per_level_scale)
        self.register_buffer("scales", torch.from_numpy(scales), persistent=False)
        self.register_buffer("resolutions", torch.from_numpy(res), persistent=False)
        self.register_buffer("sizes", torch.from_numpy(sizes), persistent=False)
        self.register_buffer("offsets", torch.from_numpy(offsets), persistent=False)
        self.dense_levels = int((res ** 3 <= sizes).sum())  # levels are dense up to some level, hashed above
        self.register_buffer("corners", torch.tensor([[(c >> d) & 1 for d in range(3)] for c in range(8)]),
                             persistent=False)
        self.register_buffer("primes", torch.tensor(PRIMES, dtype=torch.int64), persistent=False)
        self.table = nn.Parameter(torch.empty(int(sizes.sum()), n_features).uniform_(-init_scale, init_scale))
        self.requested_backend = backend
        self.use_cpu_kernel = cpu_kernel
        self._tcnn = None
        self._logged_backend = False

    @property
    def out_dim(self) -> int:
        return self.n_levels * self.n_features

    def normalize(self, x: Tensor) -> Tensor:
        """World points -> [0, 1]^3 inside the box."""
        return ((x + self.bound) / (2.0 * self.bound)).clamp(0.0, 1.0)

    # -- backends -------------------------------------------------------------------------------------------------
    def layout_args(self) -> tuple:
        return self.scales, self.resolutions, self.sizes, self.offsets, self.dense_levels

    def backend_for(self, x: Tensor) -> str:
        if self.requested_backend == "tcnn":
            require_tcnn("encoder.position.backend")
            if not x.is_cuda:
                raise RuntimeError("encoder.position.backend=tcnn needs CUDA tensors (device=cuda)")
            return "tcnn"
        if self.requested_backend == "auto" and x.is_cuda and tcnn_available():
            return "tcnn"
        if (self.use_cpu_kernel and x.device.type == "cpu" and x.dtype == torch.float32 and not x.requires_grad
                and self.n_features in HASH_FEATURES and cpu_kernels() is not None):
            return "cpu-kernel"
        return "torch"

    def forward(self, x: Tensor, footprint: Tensor | None = None) -> Tensor:
        """``(..., 3)`` world points -> ``(..., n_levels * n_features)``; level-major feature layout. The pixel
        ``footprint`` is not used (the grid's cells are its own filter; :attr:`uses_footprint` is False)."""
        return self._encode(x, None)

    def encode_beside(self, x: Tensor, prefix: Tensor) -> Tensor:
        """``torch.cat([prefix, self(x)], -1)`` ``(..., P + out_dim)`` for ``prefix`` ``(..., P)``: the CPU kernel
        writes the encoding after the prefix's columns, without a separate concatenation."""
        return self._encode(x, prefix)

    def _encode(self, x: Tensor, prefix: Tensor | None) -> Tensor:
        backend = self.backend_for(x)
        if not self._logged_backend:
            log.info("hash grid: %s backend (%d levels, %d dense, table 2^%d)", backend, self.n_levels,
                     self.dense_levels, self.log2_table_size)
            self._logged_backend = True
        flat = self.normalize(x.reshape(-1, 3))
        if backend == "cpu-kernel" and (prefix is None or prefix.dtype == torch.float32):
            flat_prefix = flat.new_empty(0, 0) if prefix is None else prefix.reshape(-1, prefix.shape[-1])
            out = _CPUKernelEncoding.apply(flat.contiguous(), self.table, self, flat_prefix)
            return out.reshape(*x.shape[:-1], out.shape[-1])
        out = self.encode_tcnn(flat) if backend == "tcnn" else self.encode_torch(flat)
        out = out.reshape(*x.shape[:-1], self.out_dim)
        return out if prefix is None else torch.cat([prefix, out.to(prefix.dtype)], dim=-1)

    def encode_tcnn(self, x01: Tensor) -> Tensor:
        """tinycudann's HashGrid on the same table (its parameters are this module's ``table``)."""
        import tinycudann as tcnn

        if self._tcnn is None:
            config = {"otype": "HashGrid", "n_levels": self.n_levels, "n_features_per_level": self.n_features,
                      "log2_hashmap_size": self.log2_table_size, "base_resolution": self.base_resolution,
                      "per_level_scale": self.per_level_scale, "interpolation": "Linear"}
            native = tcnn.Encoding(3, config, dtype=torch.float32).to(x01.device)
            if native.params.numel() != self.table.numel():
                raise RuntimeError(f"tinycudann's table has {native.params.numel()} entries, ours "
                                   f"{self.table.numel()}: the level layouts differ")
            # kept out of the module tree: tcnn reads this module's table, so both backends train the same weights
            object.__setattr__(self, "_tcnn", native)
        return self._tcnn_apply(x01)

    def _tcnn_apply(self, x01: Tensor) -> Tensor:
        from tinycudann.modules import _module_function

        native = self._tcnn
        return _module_function.apply(native.native_tcnn_module, x01.contiguous(), self.table.reshape(-1),
                                      native.loss_scale).float()

    def grid_indices(self, x01: Tensor) -> tuple[Tensor, Tensor]:
        """Flat table rows ``(L, N, 8)`` of each point's 8 cell corners per level, and the cell-local position
        ``(L, N, 3)`` in [0, 1)."""
        pos = x01.unsqueeze(0) * self.scales[:, None, None] + 0.5  # (L, N, 3)
        cell = torch.floor(pos)
        frac = pos - cell
        corner = cell.long().unsqueeze(2) + self.corners  # (L, N, 8, 3)
        dense = self.dense_levels
        idx = torch.empty(corner.shape[:3], dtype=torch.int64, device=x01.device)
        if dense > 0:
            r = self.resolutions[:dense, None, None]
            c = corner[:dense]
            idx[:dense] = (c[..., 0] + r * (c[..., 1] + r * c[..., 2])) % self.sizes[:dense, None, None]
        if dense < self.n_levels:
            c = corner[dense:] * self.primes
            # sizes of hashed levels are powers of two, so "mod" is the low bits of the 32-bit hash
            h = c[..., 0] ^ c[..., 1] ^ c[..., 2]
            idx[dense:] = h & (self.sizes[dense:, None, None] - 1)
        return idx + self.offsets[:, None, None], frac

    def encode_torch(self, x01: Tensor) -> Tensor:
        """Pure-PyTorch encoding of ``(N, 3)`` points in [0, 1]^3 -> ``(N, L * F)``."""
        idx, frac = self.grid_indices(x01)
        # trilinear weights: per corner, the product over axes of frac (corner bit 1) or 1 - frac (bit 0)
        bits = self.corners.to(frac.dtype)  # (8, 3)
        f = frac.unsqueeze(2)  # (L, N, 1, 3)
        w = (bits * f + (1.0 - bits) * (1.0 - f)).prod(-1)  # (L, N, 8)
        feats = self.table.index_select(0, idx.reshape(-1)).reshape(*idx.shape, self.n_features)
        out = (feats * w.unsqueeze(-1)).sum(2)  # (L, N, F)
        return out.permute(1, 0, 2).reshape(x01.shape[0], self.out_dim)
