"""Seamless textures at print size: the texture RBM (the package models/conv_rbm/) on real photographs,
against what the canvas does today.

    .venv/bin/python bench/texture.py                       # brick, grass, gravel, immunohistochemistry
    .venv/bin/python bench/texture.py --textures brick --threads 1 --budget 60
    .venv/bin/python bench/texture.py --study --textures brick --threads 1   # quality against Gibbs sweeps

Textures: scikit-image's brick, grass and gravel (grey, 512×512) and immunohistochemistry (colour,
512×512), all shipped with the package (nothing is downloaded). Each is split in two, no pixel
shared, by `--split`:
* tiles (the default): the photo cut into 4×4 tiles of 128 px; four of them, one in each row
  and each column, are held out, the other twelve are the training region. Photographs are not
  stationary (brick is seen in perspective, its bricks grow toward the right; the stain scan
  is gland on the left, stroma on the right), and held-out tiles spread over the photo keep
  that out of the floor: on brick the floor is 10× lower than with a quarter held out, and
  the training region blurred by 9 px scores 13× it instead of 0.86×.
* quarter (sessions 5-6's): by columns, the left 3/4 the training region, the right 1/4 held out.
Crops of the training region (the pixel RBM's, the tiled crops) are windows of the photo that
overlap no held-out pixel; the texture RBM trains on the region as it is (one image, or the
twelve tiles as twelve images).

Models and baselines, each making a 512×512 texture:
* texture RBM: `ConvRBM` with its defaults, trained by `ConvRBMTrainer` on random crops of the one
  training image (the region) for its default epochs or `--budget` seconds, then
  `synthesize(model, 512, 512)` from noise (one chain, `DEFAULT_SWEEPS` sweeps), E[v | h] shown.
* pixel RBM, as the canvas does today: `models.factory.build(Options(kind="rbm", image_shape=(C,
  32, 32)))` (the binary RBM's defaults) trained on 300 crops of 128 px of the training region
  shrunk to 32 px (Pillow bicubic, antialiased), cut at `--budget` seconds; 4 dreams drawn by
  `models.factory.sample_images` (1,000 Gibbs steps, tempered toward the data's base rate), each
  scaled ×4 bicubic (the canvas's texture scale) to 128 px and mirror-tiled across 512×512.
  Patches are pooled from the 4 canvases.
* PCA + GMM, the simple peer (`bench/quality.py`'s `peer_pca_gmm`: PCA to 32 components and a
  full-covariance Gaussian mixture, fitted in a fraction of a second), twice: on the pixel RBM's
  300 crops shrunk to 32 px, 4 draws ×4 and mirror-tiled as the canvas lays them; and on 300
  crops of 32 px at the photo's own grain, 4 draws mirror-tiled at ×1 (NAME-pca-gmm.png).
* training crops tiled: 16 random 128-px crops of the training region laid 4×4 (real pixels;
  seams where crops meet).

Scores: patch MMD² (`models.quality.mmd2`, Gaussian kernel, bandwidth the median distance
between held-out patches) between 1,000 random 16×16 patches of a texture and 1,000 of the
held-out region, beside the floor (1,000 patches of the training region against the held-out
ones; same estimator, same numbers of patches, so the same bias); the seam measure
(`conv_rbm.seam_ratio`: the mean |difference| across the wrap-around edge over the same across
interior neighbours; about 1 = seamless; and `seam_edge`: the wrap-around edge's mean |difference|
over the 99th percentile of the interior neighbouring columns' (rows'), the issue's own test: at
most 1 when the edge differs from its neighbour no more than interior neighbours do (a seamless
torus passes but for about one time in fifty), and a real seam stands above them (a percentile,
not the largest, so that the tiled crops' inner seams, 3 columns of 511, do not hide their edge). On a texture of lines the ratio alone can pass 1.25 without a seam: brick's
edge column at 1.36 of the mean sat at the 97th percentile of the interior pairs, the largest 1.61); grain (mean |difference| of neighbouring pixels over the
held-out region's: 1 = as sharp as the photograph; the patch MMD² with the median bandwidth
hardly sees blur; beside it the grain of the display at the photograph itself, E[v | h] of one
hidden draw given the held-out region, and of its mean field: what the shown image adds by itself,
apart from where the chain went; `--study` follows every figure against the number of sweeps,
which tells a texture the model holds from one its chains only pass through); seconds to train,
to sample 512² and 2048² (and 512² again with the sweeps in float32, as on a CPU without
bfloat16 convolutions). Beside them, as references:
the training region blurred by a 9-px box (on brick it scores BELOW the floor: the median
bandwidth rewards blur, so a blurry baseline can beat the photograph itself), and every MMD²
again at a quarter of that bandwidth, where fine structure counts, as a ratio to the floor.
Targets (✔/✘): MMD² ≤ 3× floor and below the pixel RBM's; seamless: seam_edge ≤ 1; 512² in ≤ 5 s.

PNGs (bench/out/texture/, ignored by git): NAME-texture.png (the 512² sample), NAME-rbm.png (the
first pixel-RBM canvas), NAME-crops.png, NAME-heldout.png, NAME-filters.png. A JSON of every
figure: bench/out/texture/texture-SPLIT.json. Print the load (`uptime`) beside the figures: on two busy
cores the times double.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.conv_rbm import DEFAULT_SWEEPS, ConvRBM, ConvRBMConfig, ConvRBMTrainConfig, ConvRBMTrainer, seam_ratio, synthesize  # noqa: E402
from models.quality import median_bandwidth, mmd2  # noqa: E402

OUT = Path(__file__).resolve().parent / "out" / "texture"
TEXTURES = ("brick", "grass", "gravel", "immunohistochemistry")
PATCH = 16
N_PATCHES = 1000
SIZE = 512


TILE = 128
HELD_TILES = ((0, 1), (1, 3), (2, 0), (3, 2))  # (row, column): one per row and per column


class Split:
    """A photo split in two: `train` and `held` (uint8 [N, C, h, w]: the regions as images),
    `photo` [1, C, H, W] and `held_mask` [H, W] (True on held-out pixels), for crops of the
    training region taken from the photo."""

    def __init__(self, photo: torch.Tensor, kind: str):
        self.photo = photo
        _, _, H, W = photo.shape
        self.held_mask = torch.zeros(H, W, dtype=torch.bool)
        if kind == "quarter":
            cut = W * 3 // 4
            self.held_mask[:, cut:] = True
            self.train, self.held = photo[..., :cut].contiguous(), photo[..., cut:].contiguous()
            return
        tiles = [(r, c) for r in range(H // TILE) for c in range(W // TILE)]
        if not set(HELD_TILES) <= set(tiles):
            raise ValueError(f"a photo of {W}×{H} px has fewer than 4×4 tiles of {TILE} px")
        tile = lambda r, c: photo[0, :, r * TILE : (r + 1) * TILE, c * TILE : (c + 1) * TILE]  # noqa: E731
        for r, c in HELD_TILES:
            self.held_mask[r * TILE : (r + 1) * TILE, c * TILE : (c + 1) * TILE] = True
        self.train = torch.stack([tile(r, c) for r, c in tiles if (r, c) not in HELD_TILES]).contiguous()
        self.held = torch.stack([tile(r, c) for r, c in HELD_TILES]).contiguous()

    def crops(self, n: int, size: int, seed: int) -> torch.Tensor:
        """n random size×size windows of the photo that overlap no held-out pixel [n, C, size, size]."""
        g = torch.Generator().manual_seed(seed)
        _, _, H, W = self.photo.shape
        free = ~self.held_mask
        # windows whose every pixel is free: a summed-area table of the held-out mask
        sat = F.pad(self.held_mask.int().cumsum(0).cumsum(1), (1, 0, 1, 0))
        held_in = sat[size:, size:] - sat[:-size, size:] - sat[size:, :-size] + sat[:-size, :-size]
        ok = (held_in == 0).nonzero()
        if len(ok) == 0 or not bool(free.any()):
            raise ValueError(f"no {size}-px window of the training region")
        pick = ok[torch.randint(0, len(ok), (n,), generator=g)].tolist()
        return torch.cat([self.photo[..., y : y + size, x : x + size] for y, x in pick])

    def held_image(self) -> torch.Tensor:
        """The held-out region as one image [C, h, w·N] (its tiles side by side)."""
        return torch.cat(list(self.held), -1)


def load(name: str, split: str = "tiles") -> Split:
    """One of scikit-image's photographs (uint8 [1, C, H, W]) split by `split` ("tiles" or "quarter")."""
    import skimage.data

    img = np.asarray(getattr(skimage.data, name)())
    img = img[None] if img.ndim == 2 else img.transpose(2, 0, 1)
    return Split(torch.from_numpy(np.ascontiguousarray(img))[None], split)


def patches(images: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """n random PATCH×PATCH patches from images [M, C, H, W] (uint8 or float in [0, 1]) as rows
    float [n, C·PATCH²] in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    m, _, h, w = images.shape
    idx = torch.randint(0, m, (n,), generator=g)
    ys = torch.randint(0, h - PATCH + 1, (n,), generator=g)
    xs = torch.randint(0, w - PATCH + 1, (n,), generator=g)
    x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    return torch.stack([x[i, :, y : y + PATCH, xx : xx + PATCH] for i, y, xx in zip(idx, ys, xs)]).reshape(n, -1)


def mirror_tile(tile: torch.Tensor, size: int) -> torch.Tensor:
    """[C, h, w] mirror-tiled (odd tiles flipped, as the canvas's "mirror" tiling) to size×size."""
    block = torch.cat([tile, tile.flip(-1)], -1)
    block = torch.cat([block, block.flip(-2)], -2)
    reps = -(-size // block.shape[-2]), -(-size // block.shape[-1])
    return block.repeat(1, *reps)[:, :size, :size]


def to_png(x: torch.Tensor, path: Path, scale: int = 1) -> None:
    """[C, H, W] in [0, 1] (or uint8) -> PNG."""
    a = x if x.dtype == torch.uint8 else (x.clamp(0, 1) * 255).round().to(torch.uint8)
    a = a.permute(1, 2, 0).numpy()
    im = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
    im.save(path)


def filter_grid(model: ConvRBM) -> torch.Tensor:
    f = model.filter_images()  # [K, C, f, f]
    k, c, s, _ = f.shape
    cols = 8
    rows = -(-k // cols)
    grid = torch.ones(c, rows * (s + 1) + 1, cols * (s + 1) + 1)
    for i in range(k):
        r, q = divmod(i, cols)
        grid[:, 1 + r * (s + 1) : 1 + r * (s + 1) + s, 1 + q * (s + 1) : 1 + q * (s + 1) + s] = f[i]
    return grid


def train_texture(train: torch.Tensor, budget: float | None, threads: int | None, seed: int, **overrides):
    c = train.shape[1]
    torch.manual_seed(seed)
    model_keys = {f.name for f in dataclasses.fields(ConvRBMConfig)} - {"channels", "image_shape"}
    model = ConvRBM(ConvRBMConfig(channels=c, image_shape=tuple(train.shape[1:]),
                                  **{k: v for k, v in overrides.items() if k in model_keys}))
    cfg = ConvRBMTrainConfig(seed=seed, threads=threads, frame_every=0,
                             **{k: v for k, v in overrides.items() if k not in model_keys})
    trainer = ConvRBMTrainer(model, train, cfg)
    seconds, cut = run_within(trainer, budget)
    return model, trainer, seconds, cut


def run_within(trainer, budget: float | None) -> tuple[float, bool]:
    """Train to the end, or stop (close the generator) at the first step past `budget` seconds:
    (seconds, whether the run was cut)."""
    t0 = time.perf_counter()
    run = trainer.run()
    for ev in run:
        if budget and time.perf_counter() - t0 > budget and ev.kind == "step":
            run.close()
            return time.perf_counter() - t0, True
    return time.perf_counter() - t0, False


def train_pixel_rbm(split: Split, budget: float | None, threads: int | None, seed: int):
    from models.factory import Options, build

    crops = split.crops(300, 128, seed + 1)
    small = F.interpolate(crops.float(), size=(32, 32), mode="bicubic", antialias=True, align_corners=False)
    small = small.round().clamp(0, 255).to(torch.uint8)
    extra = {"threads": threads} if threads else {}
    trainer = build(Options(kind="rbm", image_shape=(crops.shape[1], 32, 32), seed=seed, frame_every=0, extra=extra), small)
    seconds, cut = run_within(trainer, budget)
    return trainer.model, small, seconds, cut


def pixel_rbm_canvases(model, small: torch.Tensor, seed: int, n: int = 4) -> torch.Tensor:
    from models.factory import sample_images

    return canvases(sample_images(model, n, seed=seed, data=small), 4)  # dreams [n, C, 32, 32] in [0, 1]


def canvases(dreams: torch.Tensor, scale: int) -> torch.Tensor:
    """Dreams [n, C, h, w] in [0, 1] as the canvas lays a texture: scaled ×scale bicubic and
    mirror-tiled across SIZE × SIZE, one canvas each."""
    big = dreams if scale == 1 else F.interpolate(dreams, scale_factor=scale, mode="bicubic", align_corners=False)
    return torch.stack([mirror_tile(b, SIZE) for b in big.clamp(0, 1)])


def pca_gmm_canvases(split: Split, small: torch.Tensor, seed: int, n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """The simple peer (bench/quality.py's PCA + Gaussian mixture, fitted in a fraction of a
    second): on the pixel RBM's 300 crops shrunk to 32 px, its draws ×4 as the canvas lays
    them; and on 300 crops of 32 px at the photo's own grain, its draws mirror-tiled ×1."""
    from bench.quality import peer_pca_gmm

    shrunk, _ = peer_pca_gmm(small.numpy(), n, seed)
    native, _ = peer_pca_gmm(split.crops(300, 32, seed + 3).numpy(), n, seed)
    return canvases(torch.from_numpy(shrunk), 4), canvases(torch.from_numpy(native), 1)


def timed_synthesis(model: ConvRBM, size: int, seed: int) -> tuple[torch.Tensor, float]:
    t0 = time.perf_counter()
    x = synthesize(model, size, size, seed=seed)
    return x, time.perf_counter() - t0


def timed_float32_synthesis(model: ConvRBM, size: int, seed: int) -> tuple[torch.Tensor, float]:
    """`timed_synthesis` as on a CPU without bfloat16 convolutions: the fast sweeps in float32
    (the sampler module told that bfloat16 is absent while the sampler is made)."""
    from models.conv_rbm import sampler as sampler_module

    real = sampler_module.bf16_convolutions_available
    sampler_module.bf16_convolutions_available = lambda device: False
    try:
        return timed_synthesis(model, size, seed)
    finally:
        sampler_module.bf16_convolutions_available = real


def grain(images: torch.Tensor) -> float:
    """Mean |difference| between neighbouring pixels (rows and columns) of images in [0, 1]
    (uint8 scaled): how much fine detail they have. Reported over the held-out region's, so 1
    is as sharp as the photograph; an upscaled texture is smoother (below 1)."""
    x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    return float(((x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()) / 2)


@torch.no_grad()
def display_grain(model: ConvRBM, held: torch.Tensor, seed: int) -> tuple[float, float]:
    """The grain the shown image has when the chain sits exactly at the photograph: (E[v | h] of
    one draw h ~ p(h | held-out region), as `synthesize` shows its last sweep; the mean field
    E[v | p(h | v)]), over the held-out region's grain. Above 1: the display of one binary
    hidden draw through the filters adds grain by itself; the rest of a sample's grain is the
    chain's (brick, issue 15: 1.45 of the sample's 1.67; grass 0.69, gravel 0.87)."""
    p = model.pooling
    held = held[..., : held.shape[-2] - held.shape[-2] % p, : held.shape[-1] - held.shape[-1] % p]
    v = model.images_to_visible(held)
    probs = model.hidden_probs(v)
    one = model.visible_mean(model.draw_hidden(probs, torch.Generator().manual_seed(seed)))
    base = grain(held)
    return grain(model.visible_to_images(one)) / base, grain(model.visible_to_images(model.visible_mean(probs))) / base


def seam_edge(images: torch.Tensor) -> float:
    """The wrap-around edge against the interior: the larger of (the mean |difference| between
    the last and first column over the 99th percentile of such means between two neighbouring
    interior columns) and the same for rows. ≤ 1: the edge differs no more than interior
    neighbours do."""
    x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    cols = (x[..., :, 1:] - x[..., :, :-1]).abs().mean(dim=tuple(i for i in range(x.dim()) if i != x.dim() - 1))
    rows = (x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=tuple(i for i in range(x.dim()) if i != x.dim() - 2))
    edge_c = (x[..., :, 0] - x[..., :, -1]).abs().mean()
    edge_r = (x[..., 0, :] - x[..., -1, :]).abs().mean()
    return float(max(edge_c / cols.quantile(0.99).clamp_min(1e-12), edge_r / rows.quantile(0.99).clamp_min(1e-12)))


def mark(ok: bool) -> str:
    return "✔" if ok else "✘"


def study(args, overrides: dict) -> None:
    """Quality of 256² samples against the number of sweeps (and annealing), per texture: patch
    MMD² as a ratio to the floor at both bandwidths, grain, and the contrast of the shown E[v | h]
    (its std over the held-out region's, standardised units). A model whose own equilibrium is
    the texture holds its figures as the sweeps grow; one whose figures (and contrast) keep
    climbing past DEFAULT_SWEEPS is only caught on its way to something else (brick, issue 15,
    annealed: ×0.7 floor at 40 sweeps, ×5 at 80, ×12 at 160, ×16 at 320; grain 1.7 -> 2.3,
    contrast 1.1 -> 1.4: ever denser mortar stripes)."""
    from models.conv_rbm import ConvGibbsSampler

    for name in args.textures:
        split = load(name, args.split)
        train, held = split.train, split.held
        model, _, secs, _ = train_texture(train, args.budget, args.threads, args.seed, **overrides)
        model.eval()
        hp = patches(held, N_PATCHES, 1)
        bw = median_bandwidth(hp)
        tp = patches(train, N_PATCHES, 2)
        floor, fine_floor = mmd2(tp, hp, bw), mmd2(tp, hp, bw / 4)
        held_std = float(model.images_to_visible(held).std())
        print(f"{name}: trained {secs:.0f} s, σ {model.variance.sqrt().mean():.2f}; floor {floor:.4f}, at ¼ bandwidth "
              f"{fine_floor:.4f}", flush=True)
        for anneal in (None, 2.0):
            with torch.no_grad():
                s = ConvGibbsSampler(model, n_chains=1, seed=args.seed, size=(256, 256))
                done = 0
                if anneal:  # as synthesize: annealed over the first half of DEFAULT_SWEEPS, then at T = 1
                    done = DEFAULT_SWEEPS // 2
                    s.anneal(done, start=anneal)
                for steps in (5, 10, 20, 40, 80, 160, 320):
                    if steps < done:
                        continue
                    s.step(steps - done)
                    done = steps
                    x = s.images("probs")
                    p = patches(x, N_PATCHES, 3)
                    print(f"  sweeps {steps:4d} anneal {anneal}: MMD² ×{mmd2(p, hp, bw) / floor:5.1f} floor, "
                          f"at ¼ bandwidth ×{mmd2(p, hp, bw / 4) / fine_floor:4.1f}; grain {grain(x) / grain(held):.2f}; "
                          f"contrast {float(s.mean.std()) / held_std:.2f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--textures", nargs="+", default=list(TEXTURES), choices=TEXTURES)
    ap.add_argument("--budget", type=float, default=None, help="seconds of training at most (each model)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 on a busy machine)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", choices=("tiles", "quarter"), default="tiles",
                    help="held-out region: 4 of 4×4 tiles spread over the photo (default) or its right quarter")
    ap.add_argument("--no-2048", action="store_true", help="skip the 2048² timing")
    ap.add_argument("--study", action="store_true", help="MMD² against the number of sweeps instead")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="texture RBM settings, e.g. n_filters=24")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {}
    for kv in args.set:
        k, v = kv.split("=", 1)
        overrides[k] = json.loads(v)
    if args.study:
        study(args, overrides)
        return
    OUT.mkdir(parents=True, exist_ok=True)
    load_avg = os.getloadavg()
    print(f"load average {load_avg[0]:.2f}, {load_avg[1]:.2f}; torch threads {torch.get_num_threads()}", flush=True)
    results = {}
    print(f"split: {args.split}", flush=True)
    for name in args.textures:
        split = load(name, args.split)
        train, held = split.train, split.held
        c = train.shape[1]
        hp = patches(held, N_PATCHES, 1)
        bw = median_bandwidth(hp)
        floor = mmd2(patches(train, N_PATCHES, 2), hp, bw)

        model, trainer, secs, cut = train_texture(train, args.budget, args.threads, args.seed, **overrides)
        tex, t512 = timed_synthesis(model, SIZE, args.seed)
        tex32, t512_f32 = timed_float32_synthesis(model, SIZE, args.seed)
        t2048 = float("nan")
        if not args.no_2048:
            big, t2048 = timed_synthesis(model, 2048, args.seed + 1)
            del big
        ours = mmd2(patches(tex, N_PATCHES, 3), hp, bw)
        ours_f32 = mmd2(patches(tex32, N_PATCHES, 3), hp, bw)

        rbm, small, rbm_secs, rbm_cut = train_pixel_rbm(split, args.budget, args.threads, args.seed)
        rbm_canvases = pixel_rbm_canvases(rbm, small, args.seed)
        rbm_mmd = mmd2(patches(rbm_canvases, N_PATCHES, 3), hp, bw)
        gmm4, gmm1 = pca_gmm_canvases(split, small, args.seed)
        gmm4_mmd, gmm1_mmd = mmd2(patches(gmm4, N_PATCHES, 3), hp, bw), mmd2(patches(gmm1, N_PATCHES, 3), hp, bw)

        crops = split.crops(16, 128, args.seed + 2)
        mosaic = crops.reshape(4, 4, c, 128, 128).permute(2, 0, 3, 1, 4).reshape(1, c, SIZE, SIZE)
        crops_mmd = mmd2(patches(mosaic, N_PATCHES, 3), hp, bw)

        # What the median bandwidth rewards: the training region itself blurred by a 9-px box
        # (no texture model makes that) and every texture at a quarter of the bandwidth, where
        # fine structure counts (there the real region beats its blurred copy again).
        blurred = F.avg_pool2d(train.float() / 255, 9, 1, 4, count_include_pad=False)
        fine = {key: mmd2(patches(x, N_PATCHES, sd), hp, bw / 4) for key, x, sd in (
            ("floor", train, 2), ("texture_rbm", tex, 3), ("pixel_rbm_canvas", rbm_canvases, 3),
            ("pca_gmm_canvas", gmm4, 3), ("pca_gmm_native", gmm1, 3), ("crops_tiled", mosaic, 3), ("floor_blurred", blurred, 2))}
        r = {
            "floor": floor, "texture_rbm": ours, "pixel_rbm_canvas": rbm_mmd, "crops_tiled": crops_mmd,
            "pca_gmm_canvas": gmm4_mmd, "pca_gmm_native": gmm1_mmd,
            "floor_blurred": mmd2(patches(blurred, N_PATCHES, 2), hp, bw), "fine_bandwidth": fine,
            "seam_texture_rbm": seam_ratio(tex), "seam_crops_tiled": seam_ratio(mosaic.float() / 255),
            "seam_edge_texture_rbm": seam_edge(tex), "seam_edge_crops_tiled": seam_edge(mosaic),
            "train_s": secs, "train_steps": trainer.step, "train_cut": cut, "rbm_train_s": rbm_secs, "rbm_train_cut": rbm_cut,
            "grain_texture_rbm": grain(tex) / grain(held), "grain_pixel_rbm_canvas": grain(rbm_canvases) / grain(held),
            "grain_pca_gmm_canvas": grain(gmm4) / grain(held), "grain_pca_gmm_native": grain(gmm1) / grain(held),
            "grain_crops_tiled": grain(mosaic) / grain(held), "grain_floor": grain(train) / grain(held),
            "sample_512_s": t512, "sample_2048_s": t2048, "sigma": model.variance.sqrt().tolist(),
            "sample_512_float32_s": t512_f32, "texture_rbm_float32": ours_f32,
        }
        r["grain_display_on_heldout"], r["grain_mean_field_on_heldout"] = display_grain(model, held, args.seed)
        r["targets"] = {"mmd_within_3x_floor": ours <= 3 * floor, "better_than_pixel_rbm": ours < rbm_mmd,
                        "better_than_pca_gmm": ours < min(gmm4_mmd, gmm1_mmd),
                        "seamless": r["seam_edge_texture_rbm"] <= 1.0, "sample_512_le_5s": t512 <= 5.0}
        results[name] = r
        to_png(tex[0], OUT / f"{name}-texture.png")
        to_png(rbm_canvases[0], OUT / f"{name}-rbm.png")
        to_png(gmm1[0], OUT / f"{name}-pca-gmm.png")
        to_png(mosaic[0], OUT / f"{name}-crops.png")
        to_png(split.held_image(), OUT / f"{name}-heldout.png")
        to_png(filter_grid(model), OUT / f"{name}-filters.png", scale=4)
        t = r["targets"]
        print(f"\n## {name} ({'colour' if c == 3 else 'grey'}; split {args.split}: training region "
              f"{len(train)} × {train.shape[-1]}×{train.shape[-2]}, held-out {len(held)} × {held.shape[-1]}×{held.shape[-2]})\n"
              f"| texture | patch MMD² | × floor | × floor at ¼ bandwidth | seam ratio (edge / interior p99) | grain |\n|---|---|---|---|---|---|\n"
              f"| floor (training region) | {floor:.4f} | 1.0 | 1.0 | | {r['grain_floor']:.2f} |\n"
              f"| texture RBM | {ours:.4f} | {ours / floor:.1f} {mark(t['mmd_within_3x_floor'])} | {fine['texture_rbm'] / fine['floor']:.1f} | {r['seam_texture_rbm']:.2f} ({r['seam_edge_texture_rbm']:.2f}) {mark(t['seamless'])} | {r['grain_texture_rbm']:.2f} |\n"
              f"| texture RBM, float32 sweeps (a CPU without bfloat16) | {ours_f32:.4f} | {ours_f32 / floor:.1f} | | | |\n"
              f"| pixel RBM 32 px ×4 mirror-tiled | {rbm_mmd:.4f} | {rbm_mmd / floor:.1f} | {fine['pixel_rbm_canvas'] / fine['floor']:.1f} | (mirror) | {r['grain_pixel_rbm_canvas']:.2f} |\n"
              f"| PCA + GMM 32 px ×4 mirror-tiled (the same crops as the pixel RBM) | {gmm4_mmd:.4f} | {gmm4_mmd / floor:.1f} | {fine['pca_gmm_canvas'] / fine['floor']:.1f} | (mirror) | {r['grain_pca_gmm_canvas']:.2f} |\n"
              f"| PCA + GMM on 32-px crops at the photo's grain, mirror-tiled | {gmm1_mmd:.4f} | {gmm1_mmd / floor:.1f} | {fine['pca_gmm_native'] / fine['floor']:.1f} | (mirror) | {r['grain_pca_gmm_native']:.2f} |\n"
              f"| training crops tiled | {crops_mmd:.4f} | {crops_mmd / floor:.1f} | {fine['crops_tiled'] / fine['floor']:.1f} | {r['seam_crops_tiled']:.2f} ({r['seam_edge_crops_tiled']:.2f}) | {r['grain_crops_tiled']:.2f} |\n"
              f"| training region, 9-px box blur (reference) | {r['floor_blurred']:.4f} | {r['floor_blurred'] / floor:.1f} | {fine['floor_blurred'] / fine['floor']:.1f} | | {grain(blurred) / grain(held):.2f} |\n"
              f"texture RBM {mark(t['better_than_pixel_rbm'])} better than the pixel RBM, {mark(t['better_than_pca_gmm'])} than PCA + GMM; trained {secs:.0f} s "
              f"({trainer.step} steps{', cut by --budget' if cut else ''}); pixel RBM trained {rbm_secs:.0f} s"
              f"{' (cut)' if rbm_cut else ''}; grain of the display at the photograph itself (E[v | h], one h ~ p(h | held-out)) "
              f"{r['grain_display_on_heldout']:.2f}, its mean field {r['grain_mean_field_on_heldout']:.2f}; sample 512² {t512:.2f} s {mark(t['sample_512_le_5s'])} (float32 sweeps {t512_f32:.2f} s), 2048² {t2048:.1f} s",
              flush=True)
    load_avg = os.getloadavg()
    print(f"\nload average at the end {load_avg[0]:.2f}, {load_avg[1]:.2f}")
    (OUT / f"texture-{args.split}.json").write_text(json.dumps({"load": load_avg, "split": args.split, "results": results}, indent=1))


if __name__ == "__main__":
    main()
