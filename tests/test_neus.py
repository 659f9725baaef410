"""NeuS: the SDF-to-opacity conversion, the sphere initialisation, normals, up-sampling and the SDF pipeline."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import compose_train
from nerfexp.cameras import RayBundle
from nerfexp.encoders.frequency import FrequencyEncoder
from nerfexp.fields.sdf import SDFField
from nerfexp.pipelines.build import build_pipeline
from nerfexp.renderers.neus import NeuSRenderer, alpha_weights, neus_alpha
from nerfexp.samplers.neus import NeuSUpSampler


def plane_sections(t_surface: float, n: int = 400, near: float = 0.0, far: float = 4.0):
    """Sections along a ray hitting the plane SDF ``f(t) = t_surface - t`` head on (cos = -1)."""
    t = torch.linspace(near, far, n + 1, dtype=torch.float64)
    mid, dist = 0.5 * (t[1:] + t[:-1]), t[1:] - t[:-1]
    return t, mid.unsqueeze(0), dist.unsqueeze(0), (t_surface - mid).unsqueeze(0)


def test_transmittance_through_a_plane_is_the_sigmoid_ratio():
    s, t_surface, n = 15.0, 2.0, 100
    t, mid, dist, sdf = plane_sections(t_surface, n=n)
    alpha = neus_alpha(sdf, -torch.ones_like(sdf), dist, s)
    trans = torch.cumprod(1.0 - alpha, dim=-1)[0]  # transmittance after each section
    phi = torch.sigmoid(s * (t_surface - t))
    expected = phi[1:] / phi[0]
    # exact up to NeuS's 1e-5 guard in each section's alpha
    assert torch.allclose(trans, expected, atol=n * 1e-5 + 1e-6), (trans - expected).abs().max()
    assert trans[-1] < 1e-3  # opaque behind the surface


def test_weights_peak_at_the_surface_and_depth_is_unbiased():
    s, t_surface = 200.0, 2.3
    _, mid, dist, sdf = plane_sections(t_surface, n=400, near=1.5, far=3.5)
    w = alpha_weights(neus_alpha(sdf, -torch.ones_like(sdf), dist, s))[0]
    assert abs(w.sum().item() - 1.0) < 1e-3
    assert abs((w * mid[0]).sum().item() / w.sum().item() - t_surface) < 2e-3
    assert abs(mid[0, w.argmax()].item() - t_surface) <= 0.5 * 0.005 + 1e-9  # the section at the surface


def test_leaving_a_surface_adds_no_opacity():
    s = 50.0
    _, mid, dist, sdf = plane_sections(2.0, near=2.05, far=4.0)  # outside, behind a surface the ray has left
    for anneal in (0.0, 1.0):
        alpha = neus_alpha(-sdf, torch.ones_like(sdf), dist, s, cos_anneal=anneal)
        assert alpha.max().item() < 1e-3


def sdf_field(width: int = 64, **kw) -> tuple[SDFField, FrequencyEncoder]:
    enc = FrequencyEncoder(n_freqs=4)
    torch.manual_seed(0)
    return SDFField(enc.out_dim, 27, width=width, depth=3, **kw), enc


def test_geometric_init_starts_from_the_sphere():
    # a sum of random softplus ridges approximates |x| - r, roughly (the error shrinks slowly with the width)
    field, enc = sdf_field(width=256, init_radius=0.6)
    x = torch.randn(2000, 3)
    r = torch.empty(2000).uniform_(0.0, 1.4)
    x = x / x.norm(dim=-1, keepdim=True) * r[:, None]
    with torch.no_grad():
        sdf = field.sdf(x, enc)
    err = (sdf - (r - 0.6)).abs()[r > 0.2]  # |x| has a kink at the origin that smooth ridges round off
    assert err.mean() < 0.15, err.mean()  # a rough sphere: signs and gradients below are what matter
    assert (sdf[r < 0.3] < 0).all() and (sdf[r > 1.0] > 0).all()  # inside and outside the sphere
    _, _, grad = field.geometry_with_gradient(x[r > 0.2], enc, training=False)
    cos = torch.nn.functional.cosine_similarity(grad, x[r > 0.2], dim=-1)
    assert cos.mean() > 0.95


def test_finite_difference_normals_match_autograd():
    field, enc = sdf_field(geometric_init=False, fd_eps=1e-4)
    x = torch.rand(500, 3) * 2 - 1
    sdf_a, feat_a, grad_a = field.geometry_with_gradient(x, enc, training=False)
    field.normals = "finite_difference"
    sdf_f, feat_f, grad_f = field.geometry_with_gradient(x, enc, training=False)
    assert torch.allclose(sdf_f, sdf_a.detach(), atol=1e-4)
    assert torch.allclose(feat_f, feat_a.detach(), atol=1e-4)
    # the tetrahedral difference is first-order accurate: error ~ eps * curvature
    assert torch.allclose(grad_f, grad_a.detach(), atol=1e-2 * grad_a.abs().max().item())


def test_analytic_normals_train_the_eikonal_term():
    field, enc = sdf_field(geometric_init=False)
    x = torch.rand(256, 3) * 2 - 1
    opt = torch.optim.Adam(field.parameters(), lr=1e-3)
    losses = []
    for _ in range(60):
        _, _, grad = field.geometry_with_gradient(x, enc, training=True)
        loss = ((grad.norm(dim=-1) - 1.0) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0], losses[::10]


def sphere_rays(n: int = 32) -> RayBundle:
    o = torch.tensor([0.0, 0.0, 4.0]).expand(n, 3)
    u = torch.linspace(-0.07, 0.07, n)  # every ray hits a sphere of radius 0.5 at the origin
    d = torch.nn.functional.normalize(torch.stack([u, u.flip(0) * 0.5, -torch.ones(n)], -1), dim=-1)
    return RayBundle(o, d, d, torch.full((n, 1), 3.0), torch.full((n, 1), 5.0))


def test_up_sampling_gathers_samples_at_the_surface():
    radius = 0.5
    rays = sphere_rays()
    sampler = NeuSUpSampler(bound=1.0, n_samples=32, n_importance=64, up_sample_steps=4)
    samples = sampler.sample(rays, False, lambda p: p.norm(dim=-1) - radius)
    t = samples.t
    assert t.shape == (32, 96) and (t[:, 1:] >= t[:, :-1]).all()
    assert samples.importance.sum(-1).eq(64).all()  # the up-sampled ones are marked
    # first hit of each ray with the sphere
    b = (rays.origins * rays.directions).sum(-1)
    c = (rays.origins ** 2).sum(-1) - radius ** 2
    t_hit = -b - torch.sqrt(b * b - c)
    near_hit = ((t - t_hit[:, None]).abs() < 0.05).sum(-1)
    # the uniform samples put about 1.6 per ray there (spacing 2/31); up-sampling adds most of its 64
    assert near_hit.float().mean() > 40, near_hit


@pytest.mark.parametrize("normals", ["analytic", "finite_difference"])
def test_sdf_pipeline_renders_the_initial_sphere(normals):
    cfg = compose_train(["model=neus", "encoder=frequency", "encoder.position.n_freqs=4", f"field.normals={normals}",
                         "field.init_radius=0.5", "renderer.init_variance=0.6", "sampler.n_samples=64",
                         "sampler.n_importance=64", "sampler.up_sample_steps=4"])
    pipeline = build_pipeline(cfg)
    rays = sphere_rays()
    out = pipeline(rays, torch.ones(3), training=True)
    assert set(out) >= {"rgb", "depth", "acc", "normal", "regularizer"}
    assert out["acc"].min() > 0.95  # s = e^6: the (roughly spherical) initial surface is opaque
    # the first zero crossing of the field's SDF along each ray, found densely
    t = torch.linspace(3.0, 5.0, 4001)
    with torch.no_grad():
        sdf = pipeline.sdf_fn(rays.origins[:, None] + rays.directions[:, None] * t[None, :, None])
    first_inside = (sdf < 0).float().argmax(-1)
    t_hit = t[first_inside]
    assert (out["depth"] / out["acc"] - t_hit).abs().max() < 0.02
    # the rendered normal is the field's SDF gradient where the ray meets the surface, facing the camera
    _, _, grad = pipeline.coarse_field.geometry_with_gradient(rays.origins + rays.directions * t_hit[:, None],
                                                              pipeline.pos_encoder, training=False)
    assert torch.nn.functional.cosine_similarity(out["normal"], grad, dim=-1).min() > 0.95
    assert ((out["normal"] * rays.directions).sum(-1) < 0).all()
    out["regularizer"].backward()  # the eikonal term reaches the field's weights
    assert pipeline.coarse_field.geo_layers[0].weight.grad.abs().sum() > 0
    with torch.inference_mode():
        pipeline.eval()
        evaluated = pipeline.render_rays_chunked(rays, torch.ones(3), chunk=16)
    assert torch.allclose(evaluated["depth"], out["depth"].detach(), atol=0.05)


def test_volume_field_and_neus_field_are_not_mixed_up():
    from nerfexp.config import ConfigError

    # one group swapped alone: one line naming it and the model group that picks a matching set
    with pytest.raises(ConfigError, match=r"field=sdf reads an SDF but renderer=volume .* model=neus"):
        build_pipeline(compose_train(["field=sdf"]))
    with pytest.raises(ConfigError, match=r"field=nerf reads a density but renderer=neus .* model=neus"):
        build_pipeline(compose_train(["model=nerf", "renderer=neus"]))
    with pytest.raises(ConfigError, match=r"sampler=neus reads an SDF"):
        build_pipeline(compose_train(["model=nerf", "sampler=neus"]))
    assert type(build_pipeline(compose_train(["model=neus"]))).__name__ == "SDFPipeline"


def test_sharpness_is_learned():
    renderer = NeuSRenderer(init_variance=0.3)
    assert math.isclose(renderer.inv_s().item(), math.exp(3.0), rel_tol=1e-5)
    assert renderer.variance.requires_grad


def test_interpolated_section_sdf_is_exact_for_a_linear_field():
    from nerfexp.samplers.neus import interpolate_between

    t = torch.tensor([[0.0, 1.0, 3.0, 4.0]])
    t_new = torch.tensor([[0.5, 2.0, 3.9, 4.5]])
    values = 2.0 * t - 1.0
    torch.testing.assert_close(interpolate_between(t, values, t_new), torch.tensor([[0.0, 3.0, 6.8, 7.0]]))


@pytest.mark.parametrize("normals", ["analytic", "finite_difference"])
def test_rendering_queries_only_the_sections_light_comes_from(normals):
    """A view is rendered from the sections the renderer can tell light comes from (the SDF the sampler found at
    their ends): the picture is the one every section gives, from under half the field queries."""
    cfg = compose_train(["model=neus", "encoder=frequency", "encoder.position.n_freqs=4", f"field.normals={normals}",
                         "field.init_radius=0.5", "renderer.init_variance=0.6", "sampler.n_samples=64",
                         "sampler.n_importance=64", "sampler.up_sample_steps=4"])
    pipeline = build_pipeline(cfg).eval()
    rays = sphere_rays(32)
    outs, queried = {}, {}
    for min_weight in (0.0, 1e-5, 1e-3):
        pipeline.renderer.render_min_weight = min_weight
        before = int(pipeline.points_queried)
        outs[min_weight] = pipeline.render_rays_chunked(rays, torch.ones(3), chunk=64)
        queried[min_weight] = int(pipeline.points_queried) - before
    assert queried[0.0] == len(rays) * 128
    assert queried[1e-3] < queried[1e-5] < 0.5 * queried[0.0]
    assert outs[0.0]["acc"].min() > 0.95
    for key in ("rgb", "depth", "acc", "normal"):
        torch.testing.assert_close(outs[1e-5][key], outs[0.0][key], atol=2e-3, rtol=1e-3)
    # the default: what is left out stays under half an 8-bit step of colour
    assert (outs[1e-3]["rgb"] - outs[0.0]["rgb"]).abs().max() < 0.5 / 255


def test_softplus_kernel_matches_torch_to_float32_rounding():
    """The C++ softplus that SDF geometry uses without gradients (rendering, sampling): beside float64's softplus,
    no worse than ATen's float32 one, over the curved part and both tails (large inputs come back exactly)."""
    from nerfexp.kernels import cpu_kernels

    if cpu_kernels() is None:
        pytest.skip("the C++ CPU kernels did not build on this machine")
    x = torch.cat([torch.linspace(-3.0, 3.0, 200_001), torch.randn(100_000) * 0.05,
                   torch.tensor([0.0, 1e-30, -1e-30, 0.87, -0.87, 50.0, -50.0, 1e4, -1e4])])
    for beta in (1.0, 10.0, 100.0):
        exact = torch.nn.functional.softplus(x.double(), beta=beta)
        ours = x.clone()
        cpu_kernels().softplus_inplace(ours, beta)
        aten_err = (torch.nn.functional.softplus(x, beta=beta).double() - exact).abs()
        err = (ours.double() - exact).abs()
        assert err.max() <= max(1.1 * aten_err.max().item(), 1e-8), (beta, err.max(), aten_err.max())
        assert (err <= 1e-6 * exact.abs() + 1e-12).all(), beta  # relative too: tiny outputs stay tiny
        assert torch.equal(ours[x > 50.0 / beta], x[x > 50.0 / beta])


def test_sdf_without_gradients_is_the_sdf_with_them(monkeypatch):
    """Rendering and sampling (no gradients) use the C++ softplus in place; training uses PyTorch's: both give the
    same SDF, feature and finite-difference normal."""
    from nerfexp.kernels import cpu_kernels

    field, enc = sdf_field(fd_eps=5e-3, normals="finite_difference")
    x = torch.rand(4000, 3) * 2 - 1
    with_grad = field.geometry_with_gradient(x, enc, training=False)
    if cpu_kernels() is not None:  # then PyTorch's softplus must not be what runs without gradients
        monkeypatch.setattr(field.act, "forward", lambda h: pytest.fail("PyTorch's softplus ran without gradients"))
    with torch.no_grad():
        without = field.geometry_with_gradient(x, enc, training=False)
    # float32 rounding apart; the gradient's is the SDF's over 4 fd_eps, summed over the four probes' hidden units
    for a, b, atol in zip(with_grad, without, (2e-6, 2e-6, 2e-4)):
        torch.testing.assert_close(b, a.detach(), atol=atol, rtol=1e-5)


@pytest.mark.parametrize("grad_enabled", [True, False])
def test_finite_difference_head_is_the_probes_mean_and_difference(grad_enabled):
    """The one product over the four probes' hidden units gives what evaluating each probe and combining them
    gives: the mean SDF and feature, and sum_k v_k f(x + h v_k) / (4h)."""
    field, enc = sdf_field(fd_eps=5e-3, normals="finite_difference")
    with torch.set_grad_enabled(grad_enabled):  # a chunk of rays where no section is visible queries no point
        assert [t.shape for t in field.geometry_with_gradient(torch.zeros(0, 3), enc, training=False)] == \
            [(0,), (0, field.geo_feat_dim), (0, 3)]
    x = torch.rand(3000, 3) * 2 - 1
    with torch.set_grad_enabled(grad_enabled):
        sdf, feat, grad = field.geometry_with_gradient(x, enc, training=False)
        vertices = torch.tensor([[1.0, -1.0, -1.0], [-1.0, -1.0, 1.0], [-1.0, 1.0, -1.0], [1.0, 1.0, 1.0]])
        sdf4, feat4 = field.sdf_and_feature(x.unsqueeze(-2) + vertices * 5e-3, enc)
    torch.testing.assert_close(sdf, sdf4.mean(-1), atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(feat, feat4.mean(-2), atol=2e-6, rtol=1e-5)
    expected = (sdf4.unsqueeze(-1) * vertices).sum(-2) / (4 * 5e-3)
    torch.testing.assert_close(grad, expected, atol=2e-4, rtol=1e-4)
    assert grad.norm(dim=-1).mean() > 0.1  # a real gradient, not zeros on both sides
