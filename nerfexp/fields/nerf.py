"""The NeRF MLP field: density from position only, colour from position features and view direction."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nerfexp.fields.linear_relu import linear_relu

DENSITY_ACTIVATIONS = {
    "relu": F.relu,
    "softplus": lambda x: F.softplus(x - 1.0),  # shifted so a fresh field starts nearly empty, never dead
    "exp": lambda x: torch.exp(x.clamp(max=15.0)),
}


class NeRFField(nn.Module):
    """MLP ``(encoded position, encoded direction) -> (rgb, sigma)``.

    Args:
        pos_dim, dir_dim: encoded input sizes (given by the pipeline from the encoders).
        depth, width: trunk layers and their width.
        skips: trunk layer indices whose input is concatenated with the encoded position again.
        use_viewdirs: colour depends on the view direction through a small branch of ``width // 2``.
        density_activation: ``relu`` (vanilla NeRF, default), ``softplus`` (shifted) or ``exp``.
    """

    def __init__(self, pos_dim: int, dir_dim: int, depth: int = 8, width: int = 256, skips: tuple[int, ...] = (4,),
                 use_viewdirs: bool = True, density_activation: str = "relu"):
        super().__init__()
        if density_activation not in DENSITY_ACTIVATIONS:
            raise ValueError(f"field.density_activation={density_activation!r} is not one of "
                             f"{sorted(DENSITY_ACTIVATIONS)}")
        self.skips = set(int(s) for s in skips)
        self.use_viewdirs = use_viewdirs
        self.density_act = DENSITY_ACTIVATIONS[density_activation]
        layers = []
        for k in range(depth):
            in_dim = pos_dim if k == 0 else width
            if k in self.skips and k > 0:
                in_dim += pos_dim
            layers.append(nn.Linear(in_dim, width))
        self.trunk = nn.ModuleList(layers)
        self.sigma_head = nn.Linear(width, 1)
        if use_viewdirs:
            # NeRF's linear "feature" layer followed by a linear on [feature, d] is itself one linear map of
            # [h, d]; we keep the two halves apart so the direction half runs once per ray, not per sample.
            self.view_from_point = nn.Linear(width, width // 2)
            self.view_from_dir = nn.Linear(dir_dim, width // 2, bias=False)
            self.rgb_head = nn.Linear(width // 2, 3)
        else:
            self.rgb_head = nn.Linear(width, 3)

    def trunk_features(self, x_enc: Tensor) -> Tensor:
        """Trunk output ``(..., width)`` for encoded positions ``(..., pos_dim)``."""
        h = x_enc
        for k, layer in enumerate(self.trunk):
            if k in self.skips and k > 0:
                h = torch.cat([x_enc, h], dim=-1)
            h = linear_relu(h, layer)
        return h

    def forward(self, x_enc: Tensor, d_enc: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Colour and density at samples.

        Args:
            x_enc: ``(R, S, pos_dim)`` encoded sample positions.
            d_enc: ``(R, dir_dim)`` encoded view direction of each ray (shared by its samples).
        Returns:
            rgb ``(R, S, 3)`` in [0, 1] and sigma ``(R, S)`` >= 0.
        """
        h = self.trunk_features(x_enc)
        sigma = self.density_act(self.sigma_head(h)).squeeze(-1)
        if self.use_viewdirs:
            h = F.relu(self.view_from_point(h) + self.view_from_dir(d_enc).unsqueeze(-2))
        rgb = torch.sigmoid(self.rgb_head(h))
        return rgb, sigma

    def density(self, x_enc: Tensor) -> Tensor:
        """Density alone, ``(..., pos_dim)`` -> ``(...)`` (for meshes and occupancy grids)."""
        return self.density_act(self.sigma_head(self.trunk_features(x_enc))).squeeze(-1)
