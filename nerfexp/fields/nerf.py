"""The NeRF MLP field: density from position only, colour from position features and view direction."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nerfexp.config import check_number
from nerfexp.fields.linear_relu import linear, linear_heads, linear_relu

DENSITY_ACTIVATIONS = {
    "relu": F.relu,
    "softplus": lambda x: F.softplus(x - 1.0),  # shifted so a fresh field starts nearly empty, never dead
    "exp": lambda x: torch.exp(x.clamp(max=15.0)),
}


class NeRFField(nn.Module):
    """MLP ``(encoded position, encoded direction) -> (rgb, sigma)``: NeRF's network (its Fig. 7).

    Args:
        pos_dim, dir_dim: encoded input sizes (given by the pipeline from the encoders).
        depth, width: trunk layers and their width.
        skips: trunk layers whose *output* is concatenated with the encoded position again, so the next layer sees
            ``width + pos_dim`` inputs (NeRF: ``depth=8, skips=[4]``: layer inputs 63, 256, 256, 256, 256, 319,
            256, 256 for 10 frequencies).
        use_viewdirs: colour depends on the view direction through a branch of ``width // 2``.
        density_activation: ``relu`` (the paper's), ``softplus`` (shifted) or ``exp``.
        feature_layer: NeRF's linear ``width -> width`` feature layer before the direction branch (the paper's
            network, parameter for parameter). Without it the branch reads the trunk directly: the same family
            of functions (two linear maps in a row are one), one layer fewer to run per sample. False here so that
            runs saved before the key existed load as they were trained; ``conf/field/nerf.yaml`` sets it true.
    """

    geometry = "density"

    def __init__(self, pos_dim: int, dir_dim: int, depth: int = 8, width: int = 256, skips: tuple[int, ...] = (4,),
                 use_viewdirs: bool = True, density_activation: str = "relu", feature_layer: bool = False):
        super().__init__()
        if density_activation not in DENSITY_ACTIVATIONS:
            raise ValueError(f"field.density_activation={density_activation!r} is not one of "
                             f"{sorted(DENSITY_ACTIVATIONS)}")
        check_number("depth", depth, int, low=1)
        check_number("width", width, int, low=2)
        self.skips = set(int(s) for s in skips)
        bad = sorted(k for k in self.skips if not 0 <= k < depth - 1)
        if bad:
            raise ValueError(f"field.skips={sorted(self.skips)}: each skip must be a trunk layer before the last "
                             f"(0..{depth - 2} for field.depth={depth}); {bad} is not")
        self.use_viewdirs = use_viewdirs
        self.density_act = DENSITY_ACTIVATIONS[density_activation]
        layers = []
        for k in range(depth):
            in_dim = pos_dim if k == 0 else width
            if k - 1 in self.skips:
                in_dim += pos_dim
            layers.append(nn.Linear(in_dim, width))
        self.trunk = nn.ModuleList(layers)
        self.sigma_head = nn.Linear(width, 1)
        self.feature = nn.Linear(width, width) if (use_viewdirs and feature_layer) else None
        if use_viewdirs:
            # NeRF's linear on [feature, d] split in two, so the direction half runs once per ray, not per sample
            self.view_from_point = nn.Linear(width, width // 2)
            self.view_from_dir = nn.Linear(dir_dim, width // 2, bias=False)
            self.rgb_head = nn.Linear(width // 2, 3)
        else:
            self.rgb_head = nn.Linear(width, 3)

    def trunk_features(self, x_enc: Tensor) -> Tensor:
        """Trunk output ``(..., width)`` for encoded positions ``(..., pos_dim)``."""
        h = x_enc
        for k, layer in enumerate(self.trunk):
            h = linear_relu(h, layer, stable_rows=True)
            if k in self.skips:
                h = torch.cat([x_enc, h], dim=-1)
        return h

    def activate_density(self, raw: Tensor, noise_std: float = 0.0) -> Tensor:
        """Density from the density head's output; ``noise_std`` > 0 adds Gaussian noise before the activation
        (training)."""
        if noise_std > 0:
            raw = raw + torch.randn_like(raw) * noise_std
        return self.density_act(raw)

    def forward(self, x_enc: Tensor, d_enc: Tensor | None = None,
                density_noise_std: float = 0.0) -> tuple[Tensor, Tensor]:
        """Colour and density at samples.

        Args:
            x_enc: ``(R, S, pos_dim)`` encoded sample positions.
            d_enc: ``(R, dir_dim)`` encoded view direction of each ray (shared by its samples).
            density_noise_std: noise on the raw density before its activation (NeRF's ``raw_noise_std``).
        Returns:
            rgb ``(R, S, 3)`` in [0, 1] and sigma ``(R, S)`` >= 0.
        """
        h = self.trunk_features(x_enc)
        # the density head and the colour branch's first layer both read the trunk: one product for the two
        branch = self.rgb_head if not self.use_viewdirs else self.feature or self.view_from_point
        raw, h = linear_heads(h, [self.sigma_head, branch])
        sigma = self.activate_density(raw.squeeze(-1), density_noise_std)
        if not self.use_viewdirs:
            return torch.sigmoid(h), sigma
        if self.feature is not None:
            h = linear(h, self.view_from_point, stable_rows=True)
        h = F.relu(h + self.view_from_dir(d_enc).unsqueeze(-2))
        return torch.sigmoid(linear(h, self.rgb_head, stable_rows=True)), sigma

    def density(self, x_enc: Tensor) -> Tensor:
        """Density alone, ``(..., pos_dim)`` -> ``(...)`` (for meshes and occupancy grids)."""
        raw = linear(self.trunk_features(x_enc), self.sigma_head, stable_rows=True)
        return self.activate_density(raw.squeeze(-1))
