"""The texture kind (`models.conv_rbm`) from the command line: `harmonium train --model texture`'s
images at their own grain (`texture_preprocess`), and `harmonium sample` of a texture model:
seamless textures at the size asked (--width, --height: 64 to 2,048 px), one at a time, as PNGs
with their provenance. `studio.cli.cmd_train` and `cmd_sample` hand the texture kind here."""
from __future__ import annotations

import argparse
from pathlib import Path


def texture_preprocess(args: argparse.Namespace):
    """The `Preprocess` a new texture model's images load with (`studio.dataset.texture`): the
    middle square of each photo at its own grain, at most --size px a side (default 1,024),
    never upscaled; says what it does to them on stderr (unless --quiet). ValueError (one
    sentence) for a --size or --crop a texture cannot take."""
    import sys

    from studio.dataset import demo_folder
    from studio.dataset.records import MAX_NATIVE, MIN_TARGET
    from studio.dataset.texture import plan_native

    if args.crop not in (None, "center"):
        raise ValueError(f"--crop {args.crop}: a texture trains on the middle square of each photo at its own grain; "
                         "leave --crop out")
    size = MAX_NATIVE if args.size is None else args.size
    if not MIN_TARGET <= size <= MAX_NATIVE:
        raise ValueError(f"--size for a texture is the largest side its photos keep: {MIN_TARGET} to {MAX_NATIVE:,} px "
                         f"(got {size})")
    sources = [args.folder] if args.folder else [demo_folder()]
    pre, note = plan_native(sources, color=args.color, max_side=size, follow_links=args.follow_links)
    if args.binarize:
        pre = type(pre).from_dict({**pre.to_dict(), "binarize": args.binarize})
    if not args.quiet:
        print(f"texture images: {note}", file=sys.stderr)
    return pre


def texture_size(args: argparse.Namespace) -> tuple[int, int]:
    """(height, width) of `harmonium sample`'s textures: --height and --width (either alone
    gives a square), 512 px when neither is given; ValueError outside the sizes it draws."""
    from models.conv_rbm import MAX_TEXTURE_SIDE, MIN_TEXTURE_SIDE

    width = args.width if args.width is not None else (args.height if args.height is not None else 512)
    height = args.height if args.height is not None else width
    for flag, value in (("--width", width), ("--height", height)):
        if not MIN_TEXTURE_SIDE <= value <= MAX_TEXTURE_SIDE:
            raise ValueError(f"{flag} must be {MIN_TEXTURE_SIDE} to {MAX_TEXTURE_SIDE:,} pixels (got {value})")
    return height, width


def sample_textures(args: argparse.Namespace, ckpt) -> int:
    """`harmonium sample` of a texture model: --n seamless textures of --width × --height px,
    one at a time (each `models.conv_rbm.synthesize`: --steps sweeps from noise, annealed), as
    PNGs with their provenance, and grid.png."""
    import random

    from tqdm import tqdm

    import numpy as np

    from models.conv_rbm import DEFAULT_SWEEPS
    from studio.cli import EXIT_FAILED, EXIT_OK, GRID_PAD, _err, _why
    from studio.images import images_to_uint8, mosaic, save_png

    height, width = texture_size(args)
    n = 4 if args.n is None else args.n
    steps = DEFAULT_SWEEPS if args.steps is None else args.steps
    model, pooling = ckpt.model, ckpt.model.pooling
    if height % pooling or width % pooling:
        raise ValueError(f"--width and --height must be multiples of {pooling} for this model (its max-pooling blocks); "
                         f"got {width}×{height}")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    show = "samples" if args.binary else "probs"
    info = {"model": ckpt.kind, "checkpoint_sha256": ckpt.sha256, "steps": steps, "temperature": args.temperature,
            "width": width, "height": height, "seamless": True}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    imgs, written, current = [], 0, out
    try:
        for i in tqdm(range(n), unit="texture", disable=args.quiet, desc=f"{width}×{height}"):
            texture = model.synthesize(height, width, n=1, steps=steps, seed=seed + i, temperature=args.temperature, show=show)
            im = images_to_uint8(texture)[0]
            current = out / f"sample_{i:04d}.png"
            save_png(current, im, {**info, "seed": seed + i, "chain": i})
            written += 1
            if n > 1 and height * width <= 1024 * 1024:  # the grid only of what fits in memory beside them
                imgs.append(im)
        if imgs:
            current = out / "grid.png"
            save_png(current, mosaic(np.stack(imgs), pad=GRID_PAD), {**info, "seed": seed})
    except OSError as e:
        from studio.dataset import display_path

        _err(f"cannot write {display_path(current)} ({_why(e)}); {written} of the {n} textures were written, each whole")
        return EXIT_FAILED
    print(f"wrote {n} seamless {width}×{height} textures" + (" and grid.png" if imgs else "") + f" to {out}")
    return EXIT_OK
