"""Building pipelines from config: per-network overrides and field backends."""
from __future__ import annotations

import pytest

from conftest import compose_train
from nerfexp.encoders.tcnn_support import tcnn_available
from nerfexp.fields.grid import GridField
from nerfexp.pipelines.build import build_pipeline


def test_coarse_overrides_apply_to_the_coarse_network_only():
    pipeline = build_pipeline(compose_train(["model=nerf", "field.width=64", "+field.coarse.width=32",
                                             "+field.coarse.depth=2"]))
    assert [layer.out_features for layer in pipeline.coarse_field.trunk] == [32, 32]
    assert [layer.out_features for layer in pipeline.fine_field.trunk] == [64] * 4
    # without a fine pass the coarse network is the model, so it keeps the field's own settings
    single = build_pipeline(compose_train(["model=nerf", "field.width=64", "+field.coarse.width=32",
                                           "sampler.n_importance=0"]))
    assert single.fine_field is None
    assert single.coarse_field.trunk[0].out_features == 64


@pytest.mark.skipif(tcnn_available(), reason="checks the fallback where tinycudann is absent")
def test_grid_field_backend_falls_back_to_torch_and_tcnn_is_refused_without_it():
    assert GridField(pos_dim=32, dir_dim=27).backend == "torch"
    with pytest.raises(RuntimeError, match="field.backend=tcnn"):
        GridField(pos_dim=32, dir_dim=27, backend="tcnn")
    with pytest.raises(ValueError, match="field.backend='fast'"):
        GridField(pos_dim=32, dir_dim=27, backend="fast")


@pytest.mark.skipif(not tcnn_available(), reason="tinycudann with CUDA is not available on this machine")
def test_tcnn_fully_fused_field_fits_a_batch():
    import torch

    torch.manual_seed(0)
    field = GridField(pos_dim=32, dir_dim=27, backend="tcnn").cuda()
    x, d = torch.randn(64, 8, 32, device="cuda"), torch.randn(64, 27, device="cuda")
    target = torch.rand(64, 8, 3, device="cuda")
    opt = torch.optim.Adam(field.parameters(), lr=1e-2)
    losses = []
    for _ in range(100):
        rgb, sigma = field(x, d)
        loss = ((rgb - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert rgb.dtype == torch.float32 and sigma.shape == (64, 8)
    assert losses[-1] < 0.5 * losses[0]


def test_integrated_encoding_is_refused_where_points_come_without_footprints():
    from nerfexp.config import ConfigError

    with pytest.raises(ConfigError, match=r"^encoder.position.integrated=true: the SDF pipeline .* model=nerf$"):
        build_pipeline(compose_train(["model=neus", "encoder=frequency", "encoder.position.integrated=true"]))
    assert build_pipeline(compose_train(["model=nerf", "encoder.position.integrated=true"])).pos_encoder.integrated
