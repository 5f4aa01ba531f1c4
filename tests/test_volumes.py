"""Volumes: the procedural generator, .npy loading, masks, the 3-D Hilbert order, 3-D neighbour
search and the 3-D interpolation baselines, all on tiny grids (8³ or smaller)."""

import numpy as np
import pytest
import torch

from asf_core import baselines3d, volumes
from asf_core.ops.curves import curve_key_3d, hilbert_index_3d
from asf_core.ops.neighbors import radius_mask_dense, radius_neighbors
from asf_core.ops.neighbors3d import _grid_knn_3d, radius_neighbors_3d


def lists_to_mask(idx, valid, s):
    col = torch.where(valid, idx, s)
    return torch.zeros(*idx.shape[:2], s + 1, dtype=torch.bool).scatter_(-1, col, True)[..., :s]


def tiny(n=2, d=8, fraction=0.2, seed=0):
    v = volumes.procedural_volumes(n, d, volumes.TEST_SEED)
    return v, volumes.make_mask_3d(n, d, fraction, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- generator, coordinates, masks


def test_generator_is_deterministic_and_in_range():
    a = volumes.procedural_volumes(3, 8, seed=volumes.TEST_SEED)
    assert a.shape == (3, 3, 8, 8, 8) and a.dtype == torch.float32
    assert torch.equal(a, volumes.procedural_volumes(3, 8, seed=volumes.TEST_SEED))
    assert torch.equal(a[:2], volumes.procedural_volumes(2, 8, seed=volumes.TEST_SEED))  # prefix-stable
    assert a.min() >= -1 and a.max() <= 1
    assert a.std(dim=(2, 3, 4)).mean() > 0.05  # not a constant background
    assert not torch.equal(a[0], a[1])


def test_split_seeds_differ():
    seeds = (volumes.TRAIN_SEED, volumes.VAL_SEED, volumes.TEST_SEED)
    assert len(set(seeds)) == 3
    vols = [volumes.procedural_volumes(2, 8, seed=s) for s in seeds]
    for i in range(3):
        for j in range(i + 1, 3):
            assert (vols[i] - vols[j]).abs().amax() > 0.1


def test_voxel_coords_mirror_pixel_coords():
    c = volumes.voxel_coords(4)
    assert c.shape == (64, 3)
    assert torch.allclose(c[0], torch.tensor([-0.75, -0.75, -0.75]))
    assert torch.allclose(c[1] - c[0], torch.tensor([0.5, 0.0, 0.0]))  # x fastest
    assert torch.allclose(c[4] - c[0], torch.tensor([0.0, 0.5, 0.0]))
    assert torch.allclose(c[16] - c[0], torch.tensor([0.0, 0.0, 0.5]))
    v = torch.randn(2, 3, 4, 4, 4)
    vals = volumes.volume_to_values(v)
    assert vals.shape == (2, 64, 3)
    assert torch.equal(vals[:, 4 * 4 * 2 + 4 * 1 + 3], v[:, :, 2, 1, 3])  # [z, y, x] at x=3, y=1, z=2
    assert torch.equal(volumes.values_to_volume(vals, 4), v)


@pytest.mark.parametrize("fraction", volumes.OBSERVED_FRACTIONS)
def test_mask_fraction_and_observations(fraction):
    v, m = tiny(n=3, d=8, fraction=fraction)
    assert m.shape == (3, 8, 8, 8) and m.dtype == torch.bool
    assert (m.sum((1, 2, 3)) == round(fraction * 512)).all()
    assert not torch.equal(m[0], m[1])
    m2 = volumes.make_mask_3d(3, 8, fraction, generator=torch.Generator().manual_seed(0))
    assert torch.equal(m, m2)
    xyz, rgb = volumes.observations_3d(v, m)
    assert xyz.shape == rgb.shape == (3, round(fraction * 512), 3)
    b, i = 1, 5  # the i-th observation sits where its coordinate says
    ix, iy, iz = ((xyz[b, i] + 1) / 2 * 8 - 0.5).round().long().tolist()
    assert m[b, iz, iy, ix] and torch.equal(rgb[b, i], v[b, :, iz, iy, ix])
    with pytest.raises(ValueError, match="observed fraction"):
        volumes.make_mask_3d(1, 8, 0.0)


def test_psnr_on_missing_voxels():
    v, m = tiny()
    out = v.clone()
    out[0][:, ~m[0]] = 0.0  # volume 0 wrong on its missing voxels only
    assert np.allclose(volumes.volume_psnr(v, v), 120.0)  # the 1e-12 MSE floor of metrics.psnr
    assert volumes.volume_psnr(out, v, m)[0] == 120.0  # its observed voxels are untouched
    assert volumes.volume_psnr(out, v)[1] == 120.0
    assert volumes.volume_psnr(out, v, ~m)[0] < volumes.volume_psnr(out, v)[0] < 100


# ---------------------------------------------------------------- .npy folders


def test_npy_folder_loading(tmp_path):
    grey = np.linspace(-1, 1, 4 ** 3, dtype=np.float32).reshape(4, 4, 4)
    rgb = np.zeros((4, 4, 4, 3), dtype=np.uint8)
    rgb[1, 2, 3] = (255, 0, 128)
    np.save(tmp_path / "a.npy", grey)
    np.save(tmp_path / "b.npy", rgb)
    v = volumes.load_npy_folder(tmp_path)
    assert v.shape == (2, 3, 4, 4, 4) and v.dtype == torch.float32
    assert torch.equal(v[0, 0], torch.from_numpy(grey)) and torch.equal(v[0, 1], v[0, 2])
    assert torch.allclose(v[1, :, 1, 2, 3], torch.tensor([1.0, -1.0, 128 / 127.5 - 1]), atol=1e-6)
    assert volumes.load_npy_folder(tmp_path, limit=1).shape[0] == 1


@pytest.mark.parametrize("array,message", [
    (np.zeros((4, 4, 5), np.float32), r"bad\.npy: expected a \(D, D, D\) or \(D, D, D, C\) array"),
    (np.zeros((4, 4, 4, 2), np.float32), r"got shape \(4, 4, 4, 2\)"),
    (np.full((4, 4, 4), 2.0, np.float32), r"bad\.npy: float values must be finite and in \[-1, 1\]"),
    (np.zeros((4, 4, 4), np.int32), r"bad\.npy: dtype must be uint8"),
    (None, r"bad\.npy: not a readable \.npy array"),
])
def test_npy_bad_files_raise_one_line(tmp_path, array, message):
    if array is None:
        (tmp_path / "bad.npy").write_bytes(b"not numpy at all")
    else:
        np.save(tmp_path / "bad.npy", array)
    with pytest.raises(ValueError, match=message) as e:
        volumes.load_npy_folder(tmp_path)
    assert "\n" not in str(e.value)


def test_npy_folder_rejects_pickles_mixed_sizes_and_empty(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="obj.npy: not a readable"):
        volumes.load_npy_folder(tmp_path)
    (tmp_path / "obj.npy").unlink()
    np.save(tmp_path / "a.npy", np.zeros((4, 4, 4), np.float32))
    np.save(tmp_path / "b.npy", np.zeros((5, 5, 5), np.float32))
    with pytest.raises(ValueError, match="share one size"):
        volumes.load_npy_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .npy files"):
        volumes.load_npy_folder(tmp_path / "empty")
    with pytest.raises(ValueError, match="not a folder"):
        volumes.load_npy_folder(tmp_path / "a.npy")


# ---------------------------------------------------------------- 3-D Hilbert order


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_hilbert_3d_is_a_path_of_face_neighbours(bits):
    n = 1 << bits
    iz, iy, ix = (g.flatten() for g in torch.meshgrid(*[torch.arange(n)] * 3, indexing="ij"))
    d = hilbert_index_3d(ix, iy, iz, bits)
    assert torch.equal(d.sort().values, torch.arange(n ** 3))  # a permutation of the cells
    order = d.argsort()
    steps = ix[order].diff().abs() + iy[order].diff().abs() + iz[order].diff().abs()
    assert (steps == 1).all()


@pytest.mark.parametrize("order,roll", [("hilbert", 0), ("hilbert", 1), ("hilbert", 2), ("raster", 0)])
def test_curve_key_3d_on_a_voxel_grid(order, roll):
    xyz = volumes.voxel_coords(8)  # quantised to 2^10 cells: every voxel keeps its own cell
    key = curve_key_3d(xyz, order, bits=10, roll=roll)
    assert key.unique().numel() == 512
    if order == "raster":
        assert torch.equal(key.argsort(), torch.arange(512))  # the row-major order of voxel_coords
    else:
        steps = (xyz[key.argsort()].diff(dim=0).abs() * 4).round().sum(-1)  # in voxels (pitch 2/8)
        assert (steps == 1).all()
    with pytest.raises(ValueError, match="unknown 3-D scan order"):
        curve_key_3d(xyz, "zigzag")


# ---------------------------------------------------------------- 3-D neighbour search


def test_2d_grid_search_does_not_take_3d_points():
    """Why neighbors3d exists: the 2-D op's grid path (auto above 1024 keys) bins (x, y) only."""
    q, keys = torch.rand(1, 10, 3), torch.rand(1, 1100, 3)
    with pytest.raises(ValueError):
        radius_neighbors(q, keys, k=4, radius=0.2, method="grid")


@pytest.mark.parametrize("method", ["brute", "grid"])
@pytest.mark.parametrize("min_valid", [0, 4])
def test_neighbors_3d_match_dense_reference(method, min_valid):
    g = torch.Generator().manual_seed(1)
    q, keys = torch.rand(2, 300, 3, generator=g) * 2 - 1, torch.rand(2, 3000, 3, generator=g) * 2 - 1
    radius = torch.tensor([0.1, 0.25])
    if method == "grid":  # the grid itself answers (not its fallback to brute force for every query)
        assert _grid_knn_3d(q, keys, 64, radius[:, None].square().expand(2, 300), min_valid) is not None
    idx, valid, d2 = radius_neighbors_3d(q, keys, k=64, radius=radius, min_valid=min_valid, method=method)
    expect = radius_mask_dense(q, keys, radius, min_valid)
    assert expect.sum(-1).max() <= 64  # k covers every neighbour, so the sets must agree exactly
    assert torch.equal(lists_to_mask(idx, valid, 3000), expect)
    true_d2 = (keys.gather(1, idx.flatten(1)[..., None].expand(-1, -1, 3)).view(*idx.shape, 3)
               - q[:, :, None]).square().sum(-1)
    assert torch.allclose(d2[valid], true_d2[valid])
    assert (d2[..., 1:] >= d2[..., :-1]).all()


def test_neighbors_3d_on_voxels_and_in_a_hole():
    """Observed voxels (many equal distances) and queries far from every key (the brute fallback)."""
    xyz = volumes.voxel_coords(16)
    keep = xyz[:, 0] < 0  # keys only in the x < 0 half
    keys = xyz[keep][torch.randperm(int(keep.sum()), generator=torch.Generator().manual_seed(2))[:1500]]
    idx, valid, d2 = radius_neighbors_3d(xyz[None], keys[None], k=40, radius=0.2, min_valid=0, method="grid")
    expect = radius_mask_dense(xyz[None], keys[None], 0.2, 0)
    assert expect.sum(-1).max() <= 40
    assert torch.equal(lists_to_mask(idx, valid, len(keys)), expect)
    _, _, d2_near = radius_neighbors_3d(xyz[None], keys[None], k=3, radius=0.0, min_valid=3, method="grid")
    ref = torch.cdist(xyz[None], keys[None]).topk(3, -1, largest=False).values.square()
    assert torch.allclose(d2_near, ref, atol=1e-6)  # the 3 nearest are exact, even deep in the hole


# ---------------------------------------------------------------- 3-D baselines


@pytest.mark.parametrize("name", list(baselines3d.METHODS_3D))
def test_baselines_reproduce_observations(name):
    v, m = tiny()
    xyz, rgb = volumes.observations_3d(v, m)
    at_obs = baselines3d.reconstruct_points_3d(name, xyz, rgb, xyz)
    tol = 0.0 if name == "nearest" else 1e-4
    assert (at_obs - rgb).abs().max() <= tol
    out = baselines3d.reconstruct_volume(name, v, m)
    assert out.shape == v.shape and out.min() >= -1 and out.max() <= 1
    keep = m[:, None].expand_as(v)
    assert torch.equal(out[keep], v[keep])
    assert (volumes.volume_psnr(out, v, ~m) > 12).all()  # better than a blank guess on these volumes


@pytest.mark.parametrize("name", list(baselines3d.METHODS_3D))
def test_baselines_ignore_the_order_of_observations(name):
    v, m = tiny(n=1)
    xyz, rgb = volumes.observations_3d(v, m)
    perm = torch.randperm(xyz.shape[1], generator=torch.Generator().manual_seed(3))
    q = volumes.voxel_coords(8)
    a = baselines3d.reconstruct_points_3d(name, xyz, rgb, q)
    b = baselines3d.reconstruct_points_3d(name, xyz[:, perm], rgb[:, perm], q)
    assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("name", ["linear", "rbf"])
def test_smooth_baselines_recover_an_affine_field(name):
    xyz = volumes.voxel_coords(8)
    field = torch.stack([0.3 * xyz[:, 0], -0.2 * xyz[:, 1] + 0.1 * xyz[:, 2], 0.25 * xyz[:, 2]], -1)
    v = volumes.values_to_volume(field[None], 8)
    m = volumes.make_mask_3d(1, 8, 0.3, generator=torch.Generator().manual_seed(4))
    out = baselines3d.reconstruct_volume(name, v, m)
    err = (out - v).abs()
    if name == "rbf":  # a thin-plate spline reproduces affine functions exactly
        assert err.max() < 1e-4
    else:  # linear falls back to nearest outside the hull, so check the interior
        assert err[..., 2:-2, 2:-2, 2:-2].max() < 1e-4


def test_unknown_baseline():
    v, m = tiny(n=1)
    xyz, rgb = volumes.observations_3d(v, m)
    with pytest.raises(ValueError, match="unknown 3-D baseline"):
        baselines3d.reconstruct_points_3d("kriging", xyz, rgb, xyz)
