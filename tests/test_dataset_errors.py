"""Broken datasets fail before training with one DatasetError that names the file and what is wrong."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nerfexp.data.blender import BlenderDataset
from nerfexp.data.demo import DemoSceneSpec, write_demo_scene
from nerfexp.data.dtu import DTUDataset
from nerfexp.data.images import DatasetError
from nerfexp.data.llff import LLFFDataset
from nerfexp.data.writers import write_dtu_scene, write_llff_scene

SPEC = DemoSceneSpec(n_train=3, n_val=1, n_test=2, resolution=16, supersample=1)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("good")
    return {"blender": write_demo_scene(base / "blender", SPEC),
            "llff": write_llff_scene(base / "llff", SPEC, n_views=4),
            "dtu": write_dtu_scene(base / "dtu", SPEC, n_views=4)}


@pytest.fixture
def copy(scenes, tmp_path):
    """A private copy of a good scene, to break."""
    def make(kind: str) -> Path:
        return Path(shutil.copytree(scenes[kind], tmp_path / kind))
    return make


def load_everything(kind: str, root: Path, **kwargs) -> None:
    # the 4-view dtu capture: 1 test view, 1 validation view, 2 to train on
    dataset = {"blender": BlenderDataset, "dtu": lambda r, **k: DTUDataset(r, n_val=1, **k),
               "llff": lambda r, **k: LLFFDataset(r, factor=None, **k)}[kind](root, **kwargs)
    for split in ("train", "val", "test"):
        dataset.load(split)


def expect_error(kind: str, root: Path, *fragments: str, **kwargs) -> str:
    """Load ``root`` as ``kind``; one DatasetError (no chained exception) whose message has every fragment."""
    with pytest.raises(DatasetError) as info:
        load_everything(kind, root, **kwargs)
    message = str(info.value)
    assert info.value.__cause__ is None
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def write_wrong_size(path: Path, size: tuple[int, int] = (12, 16)) -> None:
    with Image.open(path) as img:
        img.resize(size).save(path)


def test_good_scenes_load(scenes):
    for kind, root in scenes.items():
        load_everything(kind, root)


@pytest.mark.parametrize("kind", ["blender", "llff", "dtu"])
def test_missing_root_folder(kind, tmp_path):
    expect_error(kind, tmp_path / "nowhere", str(tmp_path / "nowhere"), "does not exist")


# -- Blender -------------------------------------------------------------------------------------------------------

def test_blender_missing_image_named_in_json(copy):
    root = copy("blender")
    (root / "train" / "r_1.png").unlink()
    expect_error("blender", root, "r_1.png", "transforms_train.json", "missing")


def test_blender_image_of_the_wrong_size(copy):
    root = copy("blender")
    write_wrong_size(root / "train" / "r_2.png")
    expect_error("blender", root, "r_2.png", "12x16", "16x16")


def test_blender_malformed_json(copy):
    root = copy("blender")
    (root / "transforms_val.json").write_text('{"camera_angle_x": 0.7, "frames": [')
    expect_error("blender", root, "transforms_val.json", "malformed JSON")


def test_blender_json_without_camera_angle(copy):
    root = copy("blender")
    meta = json.loads((root / "transforms_test.json").read_text())
    del meta["camera_angle_x"]
    (root / "transforms_test.json").write_text(json.dumps(meta))
    expect_error("blender", root, "transforms_test.json", "camera_angle_x")


def test_blender_frame_without_transform(copy):
    root = copy("blender")
    meta = json.loads((root / "transforms_train.json").read_text())
    del meta["frames"][2]["transform_matrix"]
    (root / "transforms_train.json").write_text(json.dumps(meta))
    expect_error("blender", root, "transforms_train.json", "frames[2]", "transform_matrix")


# -- LLFF ----------------------------------------------------------------------------------------------------------

def test_llff_missing_image_folder(copy):
    root = copy("llff")
    shutil.rmtree(root / "images")
    expect_error("llff", root, str(root / "images"), "does not exist")


def test_llff_missing_factor_folder_without_images_to_make_it(copy):
    root = copy("llff")
    shutil.rmtree(root / "images")
    with pytest.raises(DatasetError, match="images_4.*does not exist.*no .*images"):
        LLFFDataset(root, factor=4)


def test_llff_image_count_differs_from_poses(copy):
    root = copy("llff")
    (root / "images" / "image002.png").unlink()
    expect_error("llff", root, str(root / "images"), "3 images", "poses_bounds.npy", "4 poses")


def test_llff_image_of_the_wrong_size(copy):
    root = copy("llff")
    write_wrong_size(root / "images" / "image003.png")
    expect_error("llff", root, "image003.png", "12x16", "16x16")


def test_llff_malformed_npy(copy):
    root = copy("llff")
    (root / "poses_bounds.npy").write_bytes(b"not an npy file")
    expect_error("llff", root, "poses_bounds.npy", "not a .npy array")


def test_llff_npy_of_the_wrong_shape(copy):
    root = copy("llff")
    np.save(root / "poses_bounds.npy", np.zeros((4, 15)))
    expect_error("llff", root, "poses_bounds.npy", "(N, 17)", "(4, 15)")


# -- DTU -----------------------------------------------------------------------------------------------------------

def test_dtu_missing_image_folder(copy):
    root = copy("dtu")
    shutil.rmtree(root / "image")
    expect_error("dtu", root, str(root / "image"), "does not exist")


def test_dtu_missing_mask_folder(copy):
    root = copy("dtu")
    shutil.rmtree(root / "mask")
    expect_error("dtu", root, str(root / "mask"), "use_mask_as_alpha=false")
    load_everything("dtu", root, use_mask_as_alpha=False)


def test_dtu_image_count_differs_from_cameras(copy):
    root = copy("dtu")
    (root / "image" / "000003.png").unlink()
    expect_error("dtu", root, str(root / "image"), "3 images", "cameras_sphere.npz", "4 cameras")


def test_dtu_mask_count_differs_from_images(copy):
    root = copy("dtu")
    (root / "mask" / "001.png").unlink()
    expect_error("dtu", root, str(root / "mask"), "3 masks", "4 images")


def test_dtu_image_of_the_wrong_size(copy):
    root = copy("dtu")
    write_wrong_size(root / "image" / "000001.png")
    expect_error("dtu", root, "000001.png", "12x16", "16x16")


def test_dtu_mask_of_the_wrong_size(copy):
    root = copy("dtu")
    for mask in (root / "mask").iterdir():
        write_wrong_size(mask)
    expect_error("dtu", root, "000.png", "mask is 12x16", "16x16")


@pytest.mark.parametrize("content, fragment", [(b"PK\x03\x04 broken", "not a readable .npz"),
                                               (b"world_mat_0 = 1", "not an .npz archive")])
def test_dtu_malformed_npz(copy, content, fragment):
    root = copy("dtu")
    (root / "cameras_sphere.npz").write_bytes(content)
    expect_error("dtu", root, "cameras_sphere.npz", fragment)


def test_dtu_npz_missing_a_key(copy):
    root = copy("dtu")
    cams = dict(np.load(root / "cameras_sphere.npz"))
    del cams["scale_mat_2"]
    np.savez(root / "cameras_sphere.npz", **cams)
    expect_error("dtu", root, "cameras_sphere.npz", "'scale_mat_2'", "missing")
    del cams["world_mat_1"]
    np.savez(root / "cameras_sphere.npz", **cams)
    expect_error("dtu", root, "cameras_sphere.npz", "'world_mat_1'", "missing")


def test_dtu_npz_matrix_of_the_wrong_shape(copy):
    root = copy("dtu")
    cams = dict(np.load(root / "cameras_sphere.npz"))
    cams["world_mat_0"] = np.zeros((3, 3))
    np.savez(root / "cameras_sphere.npz", **cams)
    expect_error("dtu", root, "cameras_sphere.npz", "'world_mat_0'", "3x4 or 4x4")


def _damaged_copies(data: bytes, rng: np.random.Generator) -> list[tuple[str, bytes]]:
    """Truncations and garbled bytes of a file, as a disk or a download breaks them."""
    cuts = [("empty", b""), ("header only", data[:8]), ("cut in half", data[: len(data) // 2]),
            ("last quarter missing", data[: len(data) * 3 // 4])]
    garbled = np.frombuffer(data, dtype=np.uint8).copy()
    idx = rng.choice(np.arange(16, len(data)), size=max(len(data) // 10, 1), replace=False)
    garbled[idx] = rng.integers(0, 256, size=len(idx), dtype=np.uint8)
    return cuts + [("garbled", garbled.tobytes())]


@pytest.mark.parametrize("kind, relative", [
    ("blender", "train/r_1.png"), ("blender", "transforms_test.json"), ("llff", "poses_bounds.npy"),
    ("llff", "images/image001.png"), ("dtu", "cameras_sphere.npz"), ("dtu", "mask/001.png"),
])
def test_fuzzed_files_fail_with_one_clear_error(copy, kind, relative):
    root = copy(kind)
    path = root / relative
    if not path.exists():  # file naming differs between writers: take the first file of that folder
        path = sorted(path.parent.iterdir())[1]
    original = path.read_bytes()
    rng = np.random.default_rng(0)
    for what, damaged in _damaged_copies(original, rng):
        path.write_bytes(damaged)
        try:
            load_everything(kind, root)
        except DatasetError as exc:
            assert path.name in str(exc), f"{what}: {exc}"
            assert exc.__cause__ is None
        else:
            # garbling may hit bytes no decoder checks (pixel data of an uncompressed run): then it must load
            assert what == "garbled", f"{what} copy of {relative} loaded without error"
    path.write_bytes(original)
    load_everything(kind, root)
