"""Ray batching: every training ray once per epoch, from every image."""
import torch

from nerfexp.data.batcher import RayBatcher


def flat(batch, h, w):
    return batch.image * h * w + batch.j * w + batch.i


def test_rays_cover_every_pixel_once_per_epoch():
    n, h, w, b = 7, 5, 6, 64  # 210 pixels: the batch size does not divide the epoch
    batcher = RayBatcher(n, h, w, b, seed=3)
    seen = torch.cat([flat(batcher.next(s), h, w) for s in range(-(-210 * 3 // b))])  # three epochs and a bit
    for e in range(3):
        epoch = seen[e * 210:(e + 1) * 210]
        assert torch.equal(torch.sort(epoch).values, torch.arange(210)), f"epoch {e} misses or repeats rays"
    assert not torch.equal(seen[:210], seen[210:420]), "epochs must be reshuffled"
    # the first batch already mixes images (no image-by-image order)
    assert len(torch.unique(RayBatcher(n, h, w, b, seed=0).next(0).image)) >= 5


def test_single_image_and_precrop_modes():
    batcher = RayBatcher(4, 20, 30, 50, mode="single_image", precrop_frac=0.5, precrop_steps=2, seed=1)
    crop = batcher.next(0)
    assert ((crop.j >= 5) & (crop.j < 15)).all() and ((crop.i >= 8) & (crop.i < 23)).all()
    later = batcher.next(5)
    assert len(torch.unique(later.image)) == 1
    assert len(torch.unique(flat(later, 20, 30))) == 50


def test_batcher_state_round_trip_continues_identically():
    a = RayBatcher(3, 4, 4, 10, seed=0)
    for s in range(7):
        a.next(s)
    b = RayBatcher(3, 4, 4, 10, seed=99)
    b.load_state_dict(a.state_dict())
    for s in range(7, 20):
        assert torch.equal(flat(a.next(s), 4, 4), flat(b.next(s), 4, 4))
