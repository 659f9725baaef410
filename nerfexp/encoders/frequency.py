"""NeRF positional (frequency) encoding: ``[x, sin(2^k x), cos(2^k x)]`` for k < n_freqs; integrated over each
point's pixel footprint when asked (mip-NeRF's idea, isotropic)."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nerfexp.config import check_number


class FrequencyEncoder(nn.Module):
    """Positional encoding of ``in_dim`` inputs with ``n_freqs`` bands.

    Args:
        n_freqs: number of frequency bands L.
        max_freq_log2: log2 of the highest band (default ``n_freqs - 1``, as in NeRF).
        log_sampling: bands ``2^linspace(0, max)`` (True) or ``linspace(1, 2^max)`` (False).
        include_input: prepend the raw input.
        in_dim: input dimension (3 for positions and view directions).
        integrated: with a ``footprint`` (std ``s`` of the pixel's area around each point), each band is its
            expectation over a Gaussian of that std: ``sin(f x) exp(-(f s)^2 / 2)``. A band that varies faster than
            the pixel fades, so a ray stands for its pixel's area, not for the line through its centre (at a coarse
            resolution one ray per pixel otherwise learns edges that differ from view to view).

    Output layout per input: ``[x (in_dim), sin(f_0 x) (in_dim), cos(f_0 x) (in_dim), sin(f_1 x), ...]``.
    """

    def __init__(self, n_freqs: int = 10, max_freq_log2: float | None = None, log_sampling: bool = True,
                 include_input: bool = True, in_dim: int = 3, integrated: bool = False):
        super().__init__()
        check_number("n_freqs", n_freqs, int, low=0)
        self.in_dim, self.n_freqs, self.include_input = in_dim, n_freqs, include_input
        self.integrated = bool(integrated)
        top = (n_freqs - 1) if max_freq_log2 is None else max_freq_log2
        if n_freqs == 0:
            bands = torch.zeros(0)
        elif log_sampling:
            bands = 2.0 ** torch.linspace(0.0, top, n_freqs)
        else:
            bands = torch.linspace(1.0, 2.0 ** top, n_freqs)
        # sin and cos in one call: cos(x) = sin(x + pi/2)
        self.register_buffer("bands", bands.repeat_interleave(2), persistent=False)
        self.register_buffer("phase", torch.tensor([0.0, math.pi / 2]).repeat(n_freqs), persistent=False)

    @property
    def uses_footprint(self) -> bool:
        return self.integrated

    @property
    def out_dim(self) -> int:
        return self.in_dim * (int(self.include_input) + 2 * self.n_freqs)

    def forward(self, x: Tensor, footprint: Tensor | None = None) -> Tensor:
        """``(..., in_dim)`` -> ``(..., out_dim)``; ``footprint`` ``(..., 1)`` is used when ``integrated``."""
        if self.n_freqs == 0:
            return x if self.include_input else x[..., :0]
        angles = x.unsqueeze(-2) * self.bands[:, None] + self.phase[:, None]  # (..., 2L, in_dim)
        enc = torch.sin(angles)
        if self.integrated and footprint is not None:
            # E[sin(f (x + e))] = sin(f x) exp(-f^2 s^2 / 2) for e ~ N(0, s^2)
            enc = enc * torch.exp(-0.5 * (self.bands * footprint.to(x.dtype)) ** 2).unsqueeze(-1)
        enc = enc.flatten(-2)
        return torch.cat([x, enc], dim=-1) if self.include_input else enc
