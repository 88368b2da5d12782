"""Do painting programs open the studio's layered exports as the studio shows them?

    .venv/bin/python bench/interop.py --out bench/out/interop
    .venv/bin/python bench/interop.py --out /tmp/interop --no-programs    # the files only

Composes a 640×384 canvas from real photographs (scikit-image's sample images, shipped with the
package: nothing is downloaded): a white background, scikit-image's coffee as an opaque base
layer, then one layer in each of the twelve blend modes, each a 144×112 crop of another photograph
(astronaut, chelsea, rocket, immunohistochemistry, ...) with a soft-edged alpha, its own opacity
(0.55–1.0) and an offset into its own cell of a 4×3 grid, so that each mode's pixels can be
measured apart. Writes into --out: ``composite.png`` (the studio's composite, with provenance),
``canvas.ora`` (studio.canvas.export.save_ora) and ``canvas.psd`` (save_psd).

Then, for each program installed on the machine (Debian: ``apt-get install krita gimp``):

* Krita (5.1): ``xvfb-run krita --export --export-filename OUT.png FILE`` for the .ora and the .psd;
* GIMP (2.10): ``gimp-console`` in batch mode, a Script-Fu that loads the .psd, merges the visible
  layers and saves a PNG. (Debian's GIMP 2.10 has no OpenRaster plug-in: its file-openraster is a
  Python 2 plug-in the package no longer ships, so GIMP reads only the .psd.)

and reports, per blend mode, the mean absolute difference (in 1/255 steps, over the RGB channels
of the mode's layer rectangle) between what the program rendered and the studio's composite, and
the whole image's. Target: ≤ 1/255 for every mode a program supports. Figures are printed as a
table and written to --out/interop.json.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studio.canvas import Canvas, Layer  # noqa: E402
from studio.canvas.blend import BLEND_MODES  # noqa: E402
from studio.canvas.export import composite_provenance, save_ora, save_psd  # noqa: E402
from studio.images import save_png  # noqa: E402

WIDTH, HEIGHT = 640, 384
COLS, ROWS = 4, 3
CELL_W, CELL_H = WIDTH // COLS, HEIGHT // ROWS
LAYER_W, LAYER_H = 144, 112
PHOTOS = ("astronaut", "chelsea", "rocket", "immunohistochemistry", "colorwheel", "hubble_deep_field",
          "retina", "cat", "astronaut", "rocket", "chelsea", "immunohistochemistry")


def _photo(name: str) -> np.ndarray:
    import skimage.data

    return np.asarray(getattr(skimage.data, name)())


def _fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """A centre crop of ``image`` with the aspect ratio asked, resized to width × height (Lanczos)."""
    h, w = image.shape[:2]
    scale = min(w / width, h / height)
    cw, ch = int(width * scale), int(height * scale)
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    crop = Image.fromarray(image[y0:y0 + ch, x0:x0 + cw])
    return np.asarray(crop.convert("RGB").resize((width, height), Image.Resampling.LANCZOS))


def _soft_alpha(width: int, height: int) -> np.ndarray:
    """An alpha that is opaque in the middle and fades to 0 over the outer 12 pixels."""
    x = np.minimum(np.arange(width), np.arange(width)[::-1])
    y = np.minimum(np.arange(height), np.arange(height)[::-1])
    edge = np.minimum(y[:, None], x[None, :]).astype(np.float32)
    return (np.clip(edge / 12.0, 0, 1) * 255 + 0.5).astype(np.uint8)


def build_canvas() -> tuple[Canvas, dict[str, tuple[int, int, int, int]]]:
    """The test canvas and, per blend mode, the rectangle (x0, y0, x1, y1) its layer covers."""
    canvas = Canvas(WIDTH, HEIGHT, background=(1.0, 1.0, 1.0, 1.0))
    canvas.add_layer(Layer(name="coffee (base)", source=_fit(_photo("coffee"), WIDTH, HEIGHT)))
    alpha = _soft_alpha(LAYER_W, LAYER_H)
    boxes = {}
    for i, mode in enumerate(BLEND_MODES):
        rgb = _fit(_photo(PHOTOS[i]), LAYER_W, LAYER_H)
        x = (i % COLS) * CELL_W + (CELL_W - LAYER_W) // 2 + (i % 3) - 1
        y = (i // COLS) * CELL_H + (CELL_H - LAYER_H) // 2 + (i % 2)
        opacity = round(1.0 - 0.15 * (i % 4), 2)  # 1.0, 0.85, 0.7, 0.55
        canvas.add_layer(Layer(name=f"{mode} · {PHOTOS[i]}", source=np.dstack([rgb, alpha]), x=x, y=y,
                               blend_mode=mode, opacity=opacity,
                               provenance={"source": "scikit-image", "image": PHOTOS[i]}))
        boxes[mode] = (x, y, x + LAYER_W, y + LAYER_H)
    return canvas, boxes


# ----------------------------------------------------------------------------- programs
def krita_render(src: Path, out_png: Path, timeout: float) -> str | None:
    """Render ``src`` with Krita's command-line export; None when it worked, else why not."""
    if not shutil.which("krita"):
        return "Krita is not installed"
    cmd = ["krita", "--export", "--export-filename", str(out_png), str(src)]
    if shutil.which("xvfb-run"):
        cmd = ["xvfb-run", "-a", *cmd]
    try:
        subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"Krita did not finish in {timeout:.0f} s"
    return None if out_png.is_file() else "Krita wrote no PNG"


GIMP_SCRIPT = """
(let* ((image (car (gimp-file-load RUN-NONINTERACTIVE "{src}" "{src}")))
       (layer (car (gimp-image-merge-visible-layers image CLIP-TO-IMAGE))))
  (file-png-save2 RUN-NONINTERACTIVE image layer "{out}" "{out}" 0 9 0 0 0 0 0 0 0)
  (gimp-image-delete image))
"""


def gimp_render(src: Path, out_png: Path, timeout: float) -> str | None:
    """Render ``src`` with GIMP 2.10 in batch mode (merge the visible layers, save a PNG)."""
    gimp = shutil.which("gimp-console") or shutil.which("gimp")
    if not gimp:
        return "GIMP is not installed"
    script = GIMP_SCRIPT.format(src=str(src), out=str(out_png))
    try:
        subprocess.run([gimp, "-i", "-d", "-f", "-b", script, "-b", "(gimp-quit 0)"],
                       capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"GIMP did not finish in {timeout:.0f} s"
    return None if out_png.is_file() else "GIMP wrote no PNG"


def differences(rendered: np.ndarray, reference: np.ndarray,
                boxes: dict[str, tuple[int, int, int, int]]) -> dict[str, float]:
    """Mean |rendered − reference| over RGB, in 1/255 steps: per mode's rectangle, and 'all'."""
    if rendered.shape[:2] != reference.shape[:2]:
        return {"size": float("nan")}
    diff = np.abs(rendered[..., :3].astype(np.float64) - reference[..., :3].astype(np.float64))
    out = {mode: float(diff[y0:y1, x0:x1].mean()) for mode, (x0, y0, x1, y1) in boxes.items()}
    out["all"] = float(diff.mean())
    return out


def _read_rgba(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGBA"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder for composite.png, canvas.ora, canvas.psd, interop.json")
    ap.add_argument("--no-programs", action="store_true", help="write the files only")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds each program may take per file")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    canvas, boxes = build_canvas()
    reference = canvas.render_uint8()
    save_png(out / "composite.png", reference, composite_provenance(canvas))
    ora, psd = save_ora(canvas, out / "canvas.ora"), save_psd(canvas, out / "canvas.psd")
    print(f"wrote {out / 'composite.png'}, {ora}, {psd} ({WIDTH}×{HEIGHT}, {len(canvas.layers)} layers)")
    if args.no_programs:
        return 0

    runs = {"Krita · .ora": (krita_render, ora), "Krita · .psd": (krita_render, psd),
            "GIMP · .psd": (gimp_render, psd)}
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, (render, src) in runs.items():
            png = Path(tmp) / (label.replace(" · .", "-").replace(" ", "") + ".png")
            t0 = time.perf_counter()
            why = render(src, png, args.timeout)
            seconds = time.perf_counter() - t0
            if why is not None:
                results[label] = {"error": why}
                print(f"{label}: {why}")
                continue
            rendered = _read_rgba(png)
            shutil.copyfile(png, out / png.name)
            results[label] = {"seconds": round(seconds, 1), **differences(rendered, reference, boxes)}
    if shutil.which("gimp-console") or shutil.which("gimp"):
        results["GIMP · .ora"] = {"error": "Debian's GIMP 2.10 has no OpenRaster plug-in"}
    (out / "interop.json").write_text(json.dumps(results, indent=1))

    labels = list(results)
    print("\nmean |difference| to the studio's composite, in 1/255 (≤ 1 ✔)\n")
    print(f"{'mode':<12}" + "".join(f"{label:>15}" for label in labels))
    for mode in [*BLEND_MODES, "all"]:
        cells = []
        for label in labels:
            r = results[label]
            v = r.get(mode)
            cells.append(f"{'—':>15}" if v is None else f"{v:>12.2f} {'✔' if v <= 1 else '✘'} ")
        print(f"{mode:<12}" + "".join(cells))
    for label in labels:
        if "error" in results[label]:
            print(f"{label}: {results[label]['error']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
