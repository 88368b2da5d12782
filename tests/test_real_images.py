"""The quality bench's real image sets (bench/real_images.py): shapes, dtypes, a train /
held-out split with no image in both, the same images for the same seed."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("skimage")
pytest.importorskip("sklearn")

_PATH = Path(__file__).resolve().parents[1] / "bench" / "real_images.py"
_spec = importlib.util.spec_from_file_location("bench_real_images", _PATH)
ri = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = ri  # dataclasses look their module up there
_spec.loader.exec_module(ri)


def _check(train: np.ndarray, held: np.ndarray, shape: tuple[int, int, int], n: tuple[int, int]) -> None:
    assert train.dtype == np.uint8 and held.dtype == np.uint8
    assert train.shape == (n[0], *shape) and held.shape == (n[1], *shape)
    seen = {im.tobytes() for im in train}
    assert not any(im.tobytes() in seen for im in held), "a held-out image is also a training image"


@pytest.mark.parametrize("name, shape, n", [
    ("faces-32", (1, 32, 32), (70, 30)),
    ("textures-32", (1, 32, 32), (300, 120)),
    ("photos-64", (3, 64, 64), (40, 20)),
    ("digits-28", (1, 28, 28), (1500, 297)),
])
def test_bench_sets(name, shape, n):
    train, held = ri.SETS[name].load(seed=0)
    _check(train, held, shape, n)
    if ri.SETS[name].kind == "binary":
        assert set(np.unique(train)) <= {0, 255}
    else:
        assert len(np.unique(train)) > 50  # real grey levels, not a binarised set


def test_same_seed_same_images_other_seed_other_split():
    a, b = ri.faces(size=24, seed=3), ri.faces(size=24, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    c = ri.faces(size=24, seed=4)
    assert not np.array_equal(a[0], c[0])
    t1, t2 = ri.textures(size=16, per_image=5, heldout_per_image=2, seed=1), ri.textures(size=16, per_image=5, heldout_per_image=2, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(t1, t2))
    _check(*t1, (1, 16, 16), (15, 6))
    p1, p2 = ri.photo_crops(size=16, n_train=12, n_heldout=11, seed=2), ri.photo_crops(size=16, n_train=12, n_heldout=11, seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(p1, p2))
    _check(*p1, (3, 16, 16), (12, 11))


def test_digits_are_rbm_quality_digits_28():
    spec = importlib.util.spec_from_file_location("bench_rbm_quality", _PATH.parent / "rbm_quality.py")
    rq = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rq)
    train, held = ri.digits(seed=0)
    want_train, want_held = rq.digits_28(0)
    assert np.array_equal(train, want_train.numpy()) and np.array_equal(held, want_held.numpy())


def test_folder(tmp_path: Path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(10):
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(tmp_path / f"im{i}.png")
    train, held = ri.folder(tmp_path, size=16, color=True, seed=0)
    _check(train, held, (3, 16, 16), (8, 2))
    again = ri.folder(tmp_path, size=16, color=True, seed=0)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], held)
    grey = ri.folder(tmp_path, size=16, color=False, seed=0)
    assert grey[0].shape == (8, 1, 16, 16)
