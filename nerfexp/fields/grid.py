"""A small field for grid encoders (Instant-NGP style): the grid holds the detail, two tiny MLPs decode it."""
from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from nerfexp.config import check_number
from nerfexp.encoders.tcnn_support import check_backend, require_tcnn, tcnn_available
from nerfexp.fields.linear_relu import ReLUMLP

log = logging.getLogger(__name__)


class TruncExp(torch.autograd.Function):
    """``exp(x)`` whose gradient is taken at ``min(x, 15)``, so one large density cannot blow up a step."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # noqa: D102
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: D102
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x.clamp(max=15.0))


class TcnnMLP(nn.Module):
    """tinycudann's fully fused MLP (half precision on the GPU). Its weights are its own parameters, laid out
    by tinycudann, so a checkpoint trained with it loads only into the same backend."""

    def __init__(self, in_dim: int, hidden: int, n_hidden: int, out_dim: int):
        super().__init__()
        import tinycudann as tcnn

        # the fully fused kernel keeps a layer in registers: widths 16..128 only; CUTLASS takes any width
        otype = "FullyFusedMLP" if hidden in (16, 32, 64, 128) else "CutlassMLP"
        self.net = tcnn.Network(in_dim, out_dim, {"otype": otype, "activation": "ReLU", "output_activation": "None",
                                                  "n_neurons": hidden, "n_hidden_layers": n_hidden})

    def forward(self, x: Tensor) -> Tensor:
        if not x.is_cuda:
            raise RuntimeError("field.backend=tcnn runs on CUDA only: use field.backend=torch with device=cpu")
        return self.net(x.reshape(-1, x.shape[-1])).float().reshape(*x.shape[:-1], -1)


def mlp(in_dim: int, hidden: int, n_hidden: int, out_dim: int, backend: str = "torch") -> nn.Module:
    """``n_hidden`` ReLU layers of ``hidden`` units, then a linear output layer; ``backend="tcnn"`` builds it as
    tinycudann's fully fused MLP."""
    if backend == "tcnn":
        return TcnnMLP(in_dim, hidden, n_hidden, out_dim)
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(n_hidden):
        layers += [nn.Linear(dim, hidden), nn.ReLU(inplace=True)]
        dim = hidden
    layers.append(nn.Linear(dim, out_dim))
    return ReLUMLP(*layers)


class GridField(nn.Module):
    """``(grid features, encoded direction) -> (rgb, sigma)`` with a density MLP and a colour MLP.

    Args:
        pos_dim, dir_dim: encoded input sizes (given by the pipeline).
        width: width of both MLPs.
        depth, color_depth: hidden layers of the density MLP and of the colour MLP.
        geo_feat_dim: features passed from the density MLP to the colour MLP.
        density_bias: added before ``exp`` (negative: a fresh field starts nearly empty).
        backend: ``auto`` (tinycudann's fully fused MLPs when it is importable with CUDA, else PyTorch), ``torch``
            or ``tcnn``.
    """

    geometry = "density"

    def __init__(self, pos_dim: int, dir_dim: int, width: int = 64, depth: int = 1,
                 color_depth: int = 2, geo_feat_dim: int = 15, density_bias: float = -1.0, backend: str = "auto"):
        super().__init__()
        check_backend(backend, "field.backend")
        for key, value, low in (("width", width, 1), ("depth", depth, 0),
                                ("color_depth", color_depth, 0), ("geo_feat_dim", geo_feat_dim, 0)):
            check_number(key, value, int, low=low)
        check_number("density_bias", density_bias, float)
        if backend == "tcnn":
            require_tcnn("field.backend")
        self.backend = "tcnn" if backend == "tcnn" or (backend == "auto" and tcnn_available()) else "torch"
        log.info("grid field: %s MLPs", "tinycudann fully fused" if self.backend == "tcnn" else "PyTorch")
        self.geo_feat_dim, self.density_bias = geo_feat_dim, density_bias
        self.density_net = mlp(pos_dim, width, depth, 1 + geo_feat_dim, self.backend)
        self.color_net = mlp(dir_dim + geo_feat_dim, width, color_depth, 3, self.backend)

    def _density(self, x_enc: Tensor, noise_std: float = 0.0) -> tuple[Tensor, Tensor]:
        h = self.density_net(x_enc)
        raw = h[..., 0] + self.density_bias
        if noise_std > 0:  # before the activation, as NeRF's raw_noise_std
            raw = raw + torch.randn_like(raw) * noise_std
        return TruncExp.apply(raw), h[..., 1:]

    def forward(self, x_enc: Tensor, d_enc: Tensor | None = None,
                density_noise_std: float = 0.0) -> tuple[Tensor, Tensor]:
        """``x_enc (R, S, pos_dim)``, ``d_enc (R, dir_dim)`` -> rgb ``(R, S, 3)``, sigma ``(R, S)``; noise of
        ``density_noise_std`` on the raw density in training."""
        sigma, geo = self._density(x_enc, density_noise_std)
        d = d_enc.unsqueeze(-2).expand(*geo.shape[:-1], d_enc.shape[-1])
        rgb = torch.sigmoid(self.color_net(torch.cat([d, geo], dim=-1)))
        return rgb, sigma

    def density(self, x_enc: Tensor) -> Tensor:
        """Density alone, ``(..., pos_dim)`` -> ``(...)``."""
        return self._density(x_enc)[0]

