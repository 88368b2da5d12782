"""Real images for the quality bench: photographs and scans that installed packages ship
(scikit-image's `skimage.data`, scikit-learn's sample images and digits), or any folder.

Every loader returns (train uint8 [N, C, H, W], heldout uint8 [M, C, H, W]), deterministic
from `seed`, split so that no held-out image is seen in training: the faces and digits are
split by a seeded permutation of distinct images; texture patches and photo crops come from
disjoint regions of their source images (left 3/4 / right 1/4 of a texture, top 2/3 / bottom
1/3 of a photograph), so no held-out pixel is ever in a training image. Nothing is downloaded.

    from bench.real_images import SETS
    train, heldout = SETS["faces-32"].load(seed=0)
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

Split = tuple[np.ndarray, np.ndarray]


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    """H×W (grey) or H×W×3 uint8 -> [C, size, size] uint8 (Pillow bicubic; Pillow widens the
    filter when it shrinks, so downscaled crops are antialiased)."""
    im = Image.fromarray(img).resize((size, size), Image.Resampling.BICUBIC)
    a = np.asarray(im)
    return a[None] if a.ndim == 2 else np.ascontiguousarray(a.transpose(2, 0, 1))


def _split(images: np.ndarray, n_train: int, seed: int) -> Split:
    perm = np.random.default_rng(seed).permutation(len(images))
    return np.ascontiguousarray(images[perm[:n_train]]), np.ascontiguousarray(images[perm[n_train:]])


# ------------------------------------------------------------------------------- the sets
def faces(size: int = 32, seed: int = 0, n_train: int = 70) -> Split:
    """The 100 faces of scikit-image's `lfw_subset()` (grey, 25×25, Labeled Faces in the Wild;
    its other 100 images are not faces), resized to `size` (bicubic): 70 train / 30 held-out."""
    from skimage.data import lfw_subset

    raw = lfw_subset()[:100]  # float64 in [0, 1], [100, 25, 25]
    u8 = np.clip(np.rint(raw * 255.0), 0, 255).astype(np.uint8)
    return _split(np.stack([_resize(f, size) for f in u8]), n_train, seed)


TEXTURES = ("brick", "grass", "gravel")


def textures(size: int = 32, per_image: int = 100, heldout_per_image: int = 40, seed: int = 0, patch: int = 64) -> Split:
    """Grey `patch`-px squares of scikit-image's brick, grass and gravel (512×512 each) at random
    places, resized to `size`: training patches lie wholly in the left 3/4 of each texture,
    held-out patches in the right 1/4 (no pixel shared). 100 + 40 per texture: 300 / 120."""
    import skimage.data

    rng = np.random.default_rng(seed)
    train, held = [], []
    for name in TEXTURES:
        img = getattr(skimage.data, name)()
        h, w = img.shape
        cut = w * 3 // 4
        for n, (x0, x1), out in ((per_image, (0, cut), train), (heldout_per_image, (cut, w), held)):
            ys = rng.integers(0, h - patch + 1, n)
            xs = rng.integers(x0, x1 - patch + 1, n)
            out += [_resize(img[y : y + patch, x : x + patch], size) for y, x in zip(ys, xs)]
    return np.stack(train), np.stack(held)


def _photos() -> list[tuple[str, np.ndarray]]:
    """The colour photographs the installed packages ship, as (name, H×W×3 uint8)."""
    import skimage.data as d
    from sklearn.datasets import load_sample_images

    out = [(n, getattr(d, n)()) for n in ("astronaut", "coffee", "chelsea", "rocket")]
    out.append(("motorcycle_left", d.stereo_motorcycle()[0]))
    out += [(n, getattr(d, n)()) for n in ("hubble_deep_field", "retina", "immunohistochemistry")]
    sk = load_sample_images()
    out += [(Path(f).stem, img) for f, img in zip(sk.filenames, sk.images)]  # china, flower
    return [(n, np.ascontiguousarray(a[..., :3])) for n, a in out]


PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "hubble_deep_field", "retina",
          "immunohistochemistry", "china", "flower")


def photo_crops(size: int = 64, n_train: int = 40, n_heldout: int = 20, seed: int = 0,
                side: tuple[int, int] = (96, 256)) -> Split:
    """Colour square crops of the ten photographs in `PHOTOS` (skimage: astronaut, coffee,
    chelsea, rocket, motorcycle_left, hubble_deep_field, retina, immunohistochemistry;
    scikit-learn: china, flower), resized to `size`. The i-th crop comes from photo i mod 10, its
    side drawn in `side` px (at most the region's height), at a random place: training crops
    wholly in the top 2/3 of the photo, held-out crops in the bottom 1/3. `n_train` and
    `n_heldout` count crops over all photos (default 40 / 20)."""
    rng = np.random.default_rng(seed)
    photos = _photos()
    train, held = [], []
    for n, top, out in ((n_train, True, train), (n_heldout, False, held)):
        for i in range(n):
            img = photos[i % len(photos)][1]
            h, w = img.shape[:2]
            cut = h * 2 // 3
            y0, y1 = (0, cut) if top else (cut, h)
            s = int(min(rng.integers(side[0], side[1] + 1), y1 - y0, w))
            y = int(rng.integers(y0, y1 - s + 1))
            x = int(rng.integers(0, w - s + 1))
            out.append(_resize(img[y : y + s, x : x + s], size))
    return np.stack(train), np.stack(held)


def digits(size: int = 28, seed: int = 0, n_train: int = 1500) -> Split:
    """scikit-learn's `load_digits` (1,797 8×8 scans) upsampled bilinear to `size` and
    binarised at 0.5 (0 / 255): 1,500 train / 297 held-out. For size 28 and the same seed, the
    same images and split as `bench/rbm_quality.py`'s `digits_28`."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    x = torch.from_numpy(load_digits().images).float()[:, None] / 16.0  # [1797, 1, 8, 8]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = (x > 0.5).to(torch.uint8) * 255
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    return x[perm[:n_train]].numpy(), x[perm[n_train:]].numpy()


def folder(path: str | Path, size: int = 32, color: bool = False, seed: int = 0, train_fraction: float = 0.8) -> Split:
    """Every image in `path`, loaded as the studio loads a folder (`studio.dataset.load_images`
    with `Preprocess(size=size, color=color)`: centre crop, no binarising), split by a seeded
    permutation: 80 % train / 20 % held-out. Identical files are loaded once (the loader
    de-duplicates them)."""
    from studio.dataset import Preprocess, load_images

    images = load_images(path, Preprocess(size=size, color=color)).images
    if len(images) < 2:
        raise ValueError(f"{path}: {len(images)} usable image(s); a split needs at least 2")
    n_train = min(len(images) - 1, max(1, round(len(images) * train_fraction)))
    return _split(images, n_train, seed)


# ---------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class ImageSetSpec:
    """A named bench set: `load(seed=0)` gives (train, heldout)."""

    loader: Callable[..., Split]
    description: str
    kind: str  # "grey" | "colour" | "binary"

    def load(self, seed: int = 0) -> Split:
        return self.loader(seed=seed)

    def __iter__(self):  # name -> (loader, description), as a pair
        return iter((self.loader, self.description))


SETS: dict[str, ImageSetSpec] = {
    "faces-32": ImageSetSpec(functools.partial(faces, size=32), "LFW faces (skimage lfw_subset), grey 32 px, 70 / 30", "grey"),
    "textures-32": ImageSetSpec(functools.partial(textures, size=32), "brick, grass, gravel patches (skimage), grey 32 px, 300 / 120", "grey"),
    "photos-64": ImageSetSpec(functools.partial(photo_crops, size=64), "crops of 10 colour photographs (skimage, sklearn), 64 px, 40 / 20", "colour"),
    "digits-28": ImageSetSpec(functools.partial(digits, size=28), "sklearn digits upsampled, binarised, 28 px, 1,500 / 297", "binary"),
    "photos-32": ImageSetSpec(functools.partial(photo_crops, size=32), "crops of 10 colour photographs (skimage, sklearn), 32 px, 40 / 20", "colour"),
    "textures-64": ImageSetSpec(functools.partial(textures, size=64), "brick, grass, gravel patches (skimage), grey 64 px, 300 / 120", "grey"),
}
BENCH_SETS = ("faces-32", "textures-32", "photos-64", "digits-28")  # the default bench


def folder_set(path: str | Path, size: int, color: bool) -> ImageSetSpec:
    """A folder as a bench set (not registered)."""
    return ImageSetSpec(functools.partial(folder, path, size=size, color=color),
                        f"folder {path}, {'colour' if color else 'grey'} {size} px, 80 / 20 %", "colour" if color else "grey")
