"""Tests for studio.dataset: a hostile folder built in tmp_path, pixel-exact checks of every
odd-but-valid kind, a reason for every broken kind, preprocessing geometry, progress,
cancellation and the demo set."""
from __future__ import annotations

import json
import os
import struct
import threading
import zlib
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio import dataset
from studio.dataset import decode as dataset_decode, walk as dataset_walk
from studio.dataset import (
    ImageSet,
    LoadCancelled,
    Preprocess,
    Rejected,
    augment,
    demo_folder,
    load_demo,
    load_images,
    scan,
    scan_report,
)

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)

# The module silences this process-wide at import; pytest re-enables warnings per test.
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")


# ----------------------------------------------------------------------------- helpers


def load_one(path: Path, **pp) -> np.ndarray:
    """Load a single file and return its [C, H, W] image; fail with the reason if rejected."""
    result = load_images([path], Preprocess(**pp), workers=1)
    assert not result.rejected, result.rejected
    assert len(result) == 1
    return result.images[0]


def reason_for(path: Path, **pp) -> str:
    """Load a single file that must be rejected and return the reason."""
    result = load_images([path], Preprocess(**pp), workers=1)
    assert len(result) == 0
    assert [r.path for r in result.rejected] == [str(path)]
    return result.rejected[0].reason


def solid(color, size=(16, 16), mode="RGB") -> Image.Image:
    return Image.new(mode, size, color)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int, height: int) -> bytes:
    """A ~60-byte PNG whose header claims width×height 8-bit gray pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + png_chunk(b"IEND", b""))


def _s15(x: float) -> bytes:
    return struct.pack(">i", int(round(x * 65536)))


def cmyk_icc_profile(lab: tuple[float, float, float]) -> bytes:
    """A minimal ICC v2 CMYK profile (lut8 A2B0) mapping every CMYK value to one Lab colour.

    Pillow cannot create CMYK profiles, so the bytes are assembled here; a constant mapping
    makes it obvious whether the profile was used (plain conversion gives other colours).
    """
    grid, n_in, n_out = 2, 4, 3
    lut = b"mft1" + b"\0" * 4 + bytes([n_in, n_out, grid, 0])
    lut += b"".join(_s15(1.0 if r == c else 0.0) for r in range(3) for c in range(3))
    lut += bytes(range(256)) * n_in
    L, a, b = lab
    lut += bytes([round(L * 255 / 100), round(a + 128), round(b + 128)]) * grid ** n_in
    lut += bytes(range(256)) * n_out
    text = b"test CMYK\0"
    desc = (b"desc" + b"\0" * 4 + struct.pack(">I", len(text)) + text
            + b"\0" * 8 + b"\0" * 3 + b"\0" * 67)
    white = _s15(0.9642) + _s15(1.0) + _s15(0.8249)
    tags = [(b"desc", desc), (b"wtpt", b"XYZ " + b"\0" * 4 + white),
            (b"cprt", b"text" + b"\0" * 4 + b"public domain\0"), (b"A2B0", lut)]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body + b"\0" * (-len(body) % 4)
    header = (struct.pack(">I", offset + len(data)) + b"lcms" + bytes([2, 0x10, 0, 0]) + b"prtr"
              + b"CMYK" + b"Lab " + b"\0" * 12 + b"acsp" + b"APPL" + b"\0" * 24 + white
              + b"\0" * 48)
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data


def quadrants(tl, tr, bl, br, side=16, dtype=np.uint8) -> np.ndarray:
    h = side // 2
    a = np.empty((side, side), dtype=dtype)
    a[:h, :h], a[:h, h:], a[h:, :h], a[h:, h:] = tl, tr, bl, br
    return a


def quad_means(img: np.ndarray) -> tuple[float, float, float, float]:
    h = img.shape[0] // 2
    return (img[:h, :h].mean(), img[:h, h:].mean(), img[h:, :h].mean(), img[h:, h:].mean())


def exif_jpeg(path: Path, orientation: int) -> None:
    """32×32 gray JPEG, white top-left quadrant as stored, with an EXIF Orientation tag."""
    img = Image.fromarray(quadrants(255, 0, 0, 0, side=32))
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(path, "JPEG", quality=95, exif=exif.tobytes())


def animated(path: Path, fmt: str, **kw) -> None:
    frames = [solid(c) for c in (RED, GREEN, BLUE)]
    frames[0].save(path, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **kw)


# ----------------------------------------------------------------------------- hostile folder

#: file name → expected reason fragment, for everything that must be rejected.
BROKEN = {
    "broken/truncated.jpg": "truncated or corrupt image data",
    "broken/truncated.png": "truncated or corrupt image data",
    "broken/empty.png": "empty file (0 bytes)",
    "broken/readme.png": "not an image (looks like text)",
    "broken/noise.jpg": "not an image (unrecognised content)",
    "broken/bomb.png": "image too large: 100000×100000 claims 10 gigapixels (limit 64 MP)",
    "broken/big.png": "image too large: 10000×10000 claims 100 MP (limit 64 MP)",
    "broken/dot.png": "image too small: 1×1 px (the minimum is 8 px on each side)",
    "broken/dangling.png": "broken link (its target does not exist)",
    "valid/alias.png": "same file as",
}
VALID = [
    "valid/PHOTO.JPG", "valid/Scan.PnG", "valid/plain.bmp", "valid/plain.tif", "valid/plain.webp",
    "valid/static.gif", "valid/anim.gif", "valid/anim.webp", "valid/anim.png", "valid/rgba.png",
    "valid/la.png", "valid/palette.png", "valid/cmyk.jpg", "valid/cmyk_icc.jpg", "valid/gray16.png",
    "valid/int32.tif", "valid/onebit.png", "valid/exif6.jpg", "valid/small10.png",
    "valid/jpeg_named.png", "valid/nested/a/b/deep.png",
]
IGNORED = ["valid/.DS_Store", "valid/notes.txt"]


def build_hostile(root: Path) -> Path:
    """Every kind of odd-but-valid and broken file, nested folders and a symlink loop."""
    valid, broken = root / "valid", root / "broken"
    (valid / "nested" / "a" / "b").mkdir(parents=True)
    broken.mkdir()
    solid(RED).save(valid / "PHOTO.JPG", "JPEG")
    solid(GREEN).save(valid / "Scan.PnG", "PNG")
    solid(BLUE).save(valid / "plain.bmp")
    solid(RED).save(valid / "plain.tif")
    solid(GREEN).save(valid / "plain.webp", lossless=True)
    solid(BLUE).convert("P").save(valid / "static.gif")
    animated(valid / "anim.gif", "GIF")
    animated(valid / "anim.webp", "WEBP", lossless=True)
    animated(valid / "anim.png", "PNG")
    solid((255, 0, 0, 0), mode="RGBA").save(valid / "rgba.png")
    solid((0, 0), mode="LA").save(valid / "la.png")
    pal = Image.new("P", (16, 16), 0)
    pal.putpalette([0, 0, 0, 0, 200, 0])
    pal.save(valid / "palette.png", transparency=0)
    solid((0, 255, 255, 0), mode="CMYK").save(valid / "cmyk.jpg", "JPEG")
    solid((0, 255, 255, 0), mode="CMYK").save(valid / "cmyk_icc.jpg", "JPEG",
                                              icc_profile=cmyk_icc_profile((32.3, 79.2, -107.9)))
    Image.fromarray(quadrants(0, 32768, 65535, 1000, dtype=np.uint16)).save(valid / "gray16.png")
    Image.fromarray(quadrants(0, 2**31 - 1, 2**30, -5, dtype=np.int32)).save(valid / "int32.tif")
    Image.fromarray(quadrants(True, False, False, True, dtype=bool)).save(valid / "onebit.png")
    exif_jpeg(valid / "exif6.jpg", 6)
    solid(GREEN, (10, 10)).save(valid / "small10.png")
    solid(RED).save(valid / "jpeg_named.png", "JPEG")  # content decides, not the name
    solid(BLUE).save(valid / "nested" / "a" / "b" / "deep.png")
    os.symlink(valid, valid / "nested" / "a" / "loop")  # a loop back to the top
    os.symlink(valid / "Scan.PnG", valid / "alias.png")  # the same file twice
    (valid / "notes.txt").write_text("not an image, and named like it\n")
    (valid / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")

    noisy = Image.effect_noise((64, 64), 80).convert("RGB")
    noisy.save(broken / "whole.jpg", "JPEG")
    data = (broken / "whole.jpg").read_bytes()
    (broken / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (broken / "whole.jpg").unlink()
    noisy.save(broken / "whole.png")
    data = (broken / "whole.png").read_bytes()
    (broken / "truncated.png").write_bytes(data[: len(data) // 2])
    (broken / "whole.png").unlink()
    (broken / "empty.png").write_bytes(b"")
    (broken / "readme.png").write_text("This is a text file that claims to be a PNG.\n" * 10)
    (broken / "noise.jpg").write_bytes(bytes(range(7, 250)) * 4)
    (broken / "bomb.png").write_bytes(bomb_png(100_000, 100_000))
    (broken / "big.png").write_bytes(bomb_png(10_000, 10_000))
    solid(RED, (1, 1)).save(broken / "dot.png")
    os.symlink(broken / "missing.png", broken / "dangling.png")
    return root


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Path:
    return build_hostile(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def hostile_set(hostile: Path) -> ImageSet:
    box: dict[str, ImageSet] = {}
    worker = threading.Thread(
        target=lambda: box.update(result=load_images([hostile], Preprocess(size=16, color=True), workers=2)))
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "load_images hung (symlink loop?)"
    return box["result"]


def rel(root: Path, paths) -> list[str]:
    return sorted(str(Path(p).relative_to(root)) for p in paths)


# ----------------------------------------------------------------------------- whole folder


def test_hostile_folder_accepts_exactly_the_valid_files(hostile, hostile_set):
    assert rel(hostile, hostile_set.paths) == sorted(VALID)
    assert len(hostile_set) == len(VALID) == len(hostile_set.info)
    assert hostile_set.images.shape == (len(VALID), 3, 16, 16)


def test_hostile_folder_rejects_every_broken_file_with_its_reason(hostile, hostile_set):
    got = {str(Path(r.path).relative_to(hostile)): r.reason for r in hostile_set.rejected}
    assert sorted(got) == sorted(BROKEN)
    for name, fragment in BROKEN.items():
        assert fragment in got[name], (name, got[name])
    assert got["valid/alias.png"].startswith(f"same file as {hostile / 'valid' / 'Scan.PnG'}")


def test_hostile_folder_lists_non_image_files_as_ignored(hostile, hostile_set):
    assert rel(hostile, hostile_set.ignored) == IGNORED


def test_hostile_folder_rows_match_their_paths(hostile, hostile_set):
    by_name = {str(Path(p).relative_to(hostile)): hostile_set.images[i]
               for i, p in enumerate(hostile_set.paths)}
    for name, color in [("valid/Scan.PnG", GREEN), ("valid/plain.bmp", BLUE),
                        ("valid/nested/a/b/deep.png", BLUE), ("valid/static.gif", BLUE),
                        ("valid/plain.webp", GREEN), ("valid/plain.tif", RED)]:
        assert by_name[name][:, 0, 0].tolist() == list(color), name
    assert np.abs(by_name["valid/PHOTO.JPG"][:, 8, 8].astype(int) - RED).max() <= 3
    assert np.abs(by_name["valid/jpeg_named.png"][:, 8, 8].astype(int) - RED).max() <= 3


def test_scan_is_sorted_case_insensitive_and_survives_the_loop(hostile):
    files, rejected = scan([hostile / "valid"])
    names = [str(p.relative_to(hostile)) for p in files]
    assert names == sorted(names, key=str.casefold)
    assert "valid/PHOTO.JPG" in names and "valid/Scan.PnG" in names
    assert not any("loop" in n for n in names)  # the loop is not walked twice
    assert [Path(r.path).name for r in rejected] == ["alias.png"]


# ----------------------------------------------------------------------------- odd but valid


@pytest.mark.parametrize("orientation, bright", [(1, 0), (3, 3), (6, 1), (8, 2)])
def test_exif_orientation_moves_the_white_quadrant(tmp_path, orientation, bright):
    # Stored: white top-left.  3 = rotate 180 → bottom-right; 6 = rotate 90° clockwise →
    # top-right; 8 = rotate 90° counter-clockwise → bottom-left.
    path = tmp_path / "o.jpg"
    exif_jpeg(path, orientation)
    means = quad_means(load_one(path, size=16)[0])
    for q, m in enumerate(means):
        assert (m > 230) if q == bright else (m < 25), (orientation, means)


def test_rgba_is_composited_on_the_chosen_background(tmp_path):
    a = np.zeros((16, 16, 4), np.uint8)
    a[..., 0] = 255  # red everywhere ...
    a[:, 8:, 3] = 255  # ... transparent on the left, opaque on the right
    a[:4, :8, 3] = 128  # half transparent top-left
    Image.fromarray(a, "RGBA").save(tmp_path / "a.png")
    img = load_one(tmp_path / "a.png", size=16, color=True, background=BLUE)
    assert img[:, 8, 0].tolist() == list(BLUE)
    assert img[:, 8, 12].tolist() == list(RED)
    assert np.abs(img[:, 0, 0].astype(int) - [128, 0, 127]).max() <= 1


def test_la_is_composited_in_grayscale(tmp_path):
    a = np.zeros((16, 16, 2), np.uint8)
    a[:, 8:, 1] = 255  # black, transparent left / opaque right
    Image.fromarray(a, "LA").save(tmp_path / "la.png")
    img = load_one(tmp_path / "la.png", size=16, background=(255, 255, 255))[0]
    assert (img[:, :8] == 255).all() and (img[:, 8:] == 0).all()
    img = load_one(tmp_path / "la.png", size=16, background=(100, 100, 100))[0]
    assert (img[:, :8] == 100).all() and (img[:, 8:] == 0).all()


def test_palette_transparency_and_colour_key(tmp_path):
    pal = Image.new("P", (16, 16), 0)
    pal.putpalette([0, 0, 0, 0, 200, 0])
    pal.paste(1, (0, 0, 16, 8))  # top half index 1 (green), bottom index 0 (transparent)
    pal.save(tmp_path / "p.png", transparency=0)
    img = load_one(tmp_path / "p.png", size=16, color=True, background=(255, 0, 255))
    assert img[:, 0, 0].tolist() == [0, 200, 0]
    assert img[:, 15, 0].tolist() == [255, 0, 255]
    key = solid(RED)
    key.paste((0, 0, 0), (0, 8, 16, 16))
    key.save(tmp_path / "key.png", transparency=(0, 0, 0))  # RGB colour-key transparency
    img = load_one(tmp_path / "key.png", size=16, color=True, background=BLUE)
    assert img[:, 0, 0].tolist() == list(RED) and img[:, 15, 0].tolist() == list(BLUE)


def test_cmyk_without_profile_uses_plain_conversion(hostile):
    img = load_one(hostile / "valid" / "cmyk.jpg", size=16, color=True)
    assert np.abs(img[:, 8, 8].astype(int) - RED).max() <= 4
    result = load_images([hostile / "valid" / "cmyk.jpg"], Preprocess(size=16, color=True))
    assert "CMYK converted without a colour profile" in result.info[0].notes


def test_cmyk_with_icc_profile_goes_through_the_profile(hostile):
    # The crafted profile maps every CMYK value to sRGB-blue Lab; plain conversion gives red.
    path = hostile / "valid" / "cmyk_icc.jpg"
    assert Image.open(path).info.get("icc_profile")
    r, g, b = load_one(path, size=16, color=True)[:, 8, 8].astype(int)
    assert b > 220 and r < 140 and g < 40, (r, g, b)
    info = load_images([path], Preprocess(size=16, color=True)).info[0]
    assert info.mode == "CMYK" and "CMYK converted to sRGB with its ICC profile" in info.notes


def test_16_bit_gray_is_scaled_not_clipped(hostile):
    img = load_one(hostile / "valid" / "gray16.png", size=16)[0]
    assert Image.open(hostile / "valid" / "gray16.png").mode == "I;16"
    assert quad_means(img) == (0, 128, 255, 4)  # 0, 32768, 65535, 1000 → round(v·255/65535)


def test_32_bit_integer_tiff_is_scaled_over_its_range(hostile):
    img = load_one(hostile / "valid" / "int32.tif", size=16)[0]
    assert Image.open(hostile / "valid" / "int32.tif").mode == "I"
    assert quad_means(img) == (0, 255, 128, 0)  # 0, 2³¹−1, 2³⁰, −5 (clipped)


def test_high_bit_depth_survives_exif_rotation(tmp_path):
    # Small values in a declared 32-bit TIFF stay dark even after an EXIF turn (the bit depth
    # comes from the file, not from guessing by the values).
    exif = Image.Exif()
    exif[0x0112] = 3
    Image.fromarray(quadrants(0, 0, 0, 65535, dtype=np.int32)).save(tmp_path / "r.tif", exif=exif.tobytes())
    img = load_one(tmp_path / "r.tif", size=16)[0]
    assert quad_means(img) == (0, 0, 0, 0)
    exif[0x0112] = 1
    Image.fromarray(quadrants(0, 0, 0, 2**31 - 1, dtype=np.int32)).save(tmp_path / "u.tif", exif=exif.tobytes())
    exif[0x0112] = 3
    Image.fromarray(quadrants(0, 0, 0, 2**31 - 1, dtype=np.int32)).save(tmp_path / "t.tif", exif=exif.tobytes())
    assert quad_means(load_one(tmp_path / "u.tif", size=16)[0]) == (0, 0, 0, 255)
    assert quad_means(load_one(tmp_path / "t.tif", size=16)[0]) == (255, 0, 0, 0)  # turned 180°


def test_one_bit_image_is_exact(hostile):
    img = load_one(hostile / "valid" / "onebit.png", size=16)[0]
    assert quad_means(img) == (255, 0, 0, 255)
    assert set(np.unique(img).tolist()) == {0, 255}


@pytest.mark.parametrize("name", ["anim.gif", "anim.webp", "anim.png"])
def test_animated_files_give_their_first_frame(hostile, name):
    path = hostile / "valid" / name
    assert getattr(Image.open(path), "n_frames", 1) == 3
    img = load_one(path, size=16, color=True)
    assert img[:, 8, 8].tolist() == list(RED)
    assert "animated: first frame used" in load_images([path], Preprocess(size=16)).info[0].notes


def test_small_images_are_upscaled_and_tiny_ones_refused(tmp_path):
    solid(GREEN, (10, 10)).save(tmp_path / "ten.png")
    img = load_one(tmp_path / "ten.png", size=16, color=True)
    assert img.shape == (3, 16, 16) and img[:, 8, 8].tolist() == list(GREEN)
    solid(GREEN, (1, 1)).save(tmp_path / "one.png")
    assert reason_for(tmp_path / "one.png") == "image too small: 1×1 px (the minimum is 8 px on each side)"
    assert load_one(tmp_path / "one.png", size=16, min_size=1, color=True)[:, 3, 3].tolist() == list(GREEN)
    assert "the minimum is 12 px" in reason_for(tmp_path / "ten.png", min_size=12)


# ----------------------------------------------------------------------------- broken


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    (tmp_path / "bomb.png").write_bytes(bomb_png(100_000, 100_000))
    assert reason_for(tmp_path / "bomb.png") == \
        "image too large: 100000×100000 claims 10 gigapixels (limit 64 MP)"
    (tmp_path / "wide.png").write_bytes(bomb_png(4000, 3000))
    assert reason_for(tmp_path / "wide.png", max_pixels=10_000_000) == \
        "image too large: 4000×3000 claims 12 MP (limit 10 MP)"


def test_unreadable_file_is_rejected_not_raised(tmp_path, monkeypatch):
    solid(RED).save(tmp_path / "locked.png")
    solid(RED).save(tmp_path / "fine.png")
    real_open = dataset_decode._open_file

    def guarded(path):
        if Path(path).name == "locked.png":
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path)

    monkeypatch.setattr(dataset_decode, "_open_file", guarded)
    result = load_images([tmp_path], Preprocess(size=16), workers=2)
    assert [Path(p).name for p in result.paths] == ["fine.png"]
    assert result.rejected == [Rejected(str(tmp_path / "locked.png"),
                                        "permission denied (the file cannot be read)")]


def test_chmod_000_file_is_rejected(tmp_path):
    solid(RED).save(tmp_path / "locked.png")
    os.chmod(tmp_path / "locked.png", 0)
    try:
        try:
            (tmp_path / "locked.png").read_bytes()
        except PermissionError:
            pass
        else:  # root (with CAP_DAC_OVERRIDE) or Windows: chmod cannot block reads here
            pytest.skip("chmod 000 does not stop this user from reading (e.g. root); "
                        "test_unreadable_file_is_rejected_not_raised simulates it instead")
        assert reason_for(tmp_path / "locked.png") == "permission denied (the file cannot be read)"
    finally:
        os.chmod(tmp_path / "locked.png", 0o644)


def test_chmod_000_folder_is_rejected(tmp_path):
    (tmp_path / "secret").mkdir()
    solid(RED).save(tmp_path / "secret" / "x.png")
    solid(RED).save(tmp_path / "ok.png")
    os.chmod(tmp_path / "secret", 0)
    try:
        try:
            os.listdir(tmp_path / "secret")
        except PermissionError:
            pass
        else:
            pytest.skip("chmod 000 does not stop this user from listing folders (e.g. root); "
                        "test_unreadable_folder_is_rejected_by_scan simulates it instead")
        result = load_images([tmp_path], Preprocess(size=16))
        assert result.paths == [str(tmp_path / "ok.png")]
        assert result.rejected == [Rejected(str(tmp_path / "secret"), "cannot open folder: permission denied")]
    finally:
        os.chmod(tmp_path / "secret", 0o755)


def test_pillow_hard_limit_is_reported_honestly(tmp_path):
    (tmp_path / "bomb.png").write_bytes(bomb_png(20_000, 20_000))  # 400 MP > Pillow's ~179 MP
    reason = reason_for(tmp_path / "bomb.png", max_pixels=1_000_000_000)
    assert reason == "image too large: 20000×20000 claims 400 MP (limit 179 MP)"


def test_unreadable_folder_is_rejected_by_scan(tmp_path, monkeypatch):
    (tmp_path / "secret").mkdir()
    solid(RED).save(tmp_path / "secret" / "x.png")
    solid(RED).save(tmp_path / "ok.png")
    real_scandir = os.scandir

    def guarded(path):
        if Path(path).name == "secret":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(dataset_walk.os, "scandir", guarded)
    files, rejected = scan([tmp_path])
    assert files == [tmp_path / "ok.png"]
    assert rejected == [Rejected(str(tmp_path / "secret"), "cannot open folder: permission denied")]


def test_missing_sources_and_explicit_non_images(tmp_path):
    (tmp_path / "notes.txt").write_text("hello\n")
    result = load_images([tmp_path / "nope", tmp_path / "notes.txt"], Preprocess())
    reasons = {Path(r.path).name: r.reason for r in result.rejected}
    assert reasons == {"nope": "not found", "notes.txt": "not an image (looks like text)"}
    assert len(result) == 0 and result.images.shape == (0, 1, 28, 28)


@pytest.mark.parametrize("content, fragment", [
    (b"%PDF-1.7\n" + b"\x00" * 50, "PDF"),
    (b"8BPS" + b"\x00" * 50, "PSD"),
    (b"\x00\x00\x00\x18ftypheic" + b"\x00" * 40, "HEIC/AVIF"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "SVG"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 30, "corrupt PNG"),
])
def test_sniffed_reasons_for_unidentified_files(tmp_path, content, fragment):
    (tmp_path / "x.png").write_bytes(content)
    assert fragment in reason_for(tmp_path / "x.png")


def test_unexpected_decoder_errors_become_reasons(tmp_path, monkeypatch):
    solid(RED).save(tmp_path / "a.png")

    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(dataset_decode, "_normalise_mode", explode)
    assert reason_for(tmp_path / "a.png") == "could not be decoded (RuntimeError: boom)"


# ----------------------------------------------------------------------------- preprocessing


@pytest.fixture
def three_blocks(tmp_path) -> Path:
    """48×16 gray: black | mid-gray | white blocks of 16×16."""
    a = np.zeros((16, 48), np.uint8)
    a[:, 16:32], a[:, 32:] = 128, 255
    Image.fromarray(a).save(tmp_path / "blocks.png")
    return tmp_path / "blocks.png"


def test_center_crop_keeps_the_middle(three_blocks):
    img = load_one(three_blocks, size=16, crop="center")[0]
    assert (img == 128).all()


def test_fit_pads_with_the_background(three_blocks):
    img = load_one(three_blocks, size=16, crop="fit", background=(255, 255, 255))[0].astype(int)
    # 48×16 → 16×5 content, centred vertically (rows 5/6 ..), background elsewhere.
    content = [r for r in range(16) if not (img[r] == 255).all()]
    assert len(content) == 5 and content == list(range(content[0], content[0] + 5))
    assert content[0] in (5, 6)
    mid = content[2]
    assert img[mid, 0] <= 10 and abs(img[mid, 8] - 128) <= 10 and img[mid, 15] >= 245
    img = load_one(three_blocks, size=16, crop="fit", background=(0, 0, 0))[0]
    assert (img[:5] == 0).all() and (img[11:] == 0).all()
    rgb = load_one(three_blocks, size=16, crop="fit", color=True, background=(10, 20, 30))
    assert rgb[:, 0, 0].tolist() == [10, 20, 30]


def test_stretch_squeezes_everything_in(three_blocks):
    img = load_one(three_blocks, size=16, crop="stretch")[0].astype(int)
    assert (img == img[0]).all()  # every row identical, no padding
    assert img[0, 0] <= 10 and abs(img[0, 8] - 128) <= 10 and img[0, 15] >= 245


def test_large_sources_downscale_cleanly(tmp_path):
    a = np.zeros((600, 900), np.uint8)
    a[:, 450:] = 255
    Image.fromarray(a).save(tmp_path / "big.png")
    img = load_one(tmp_path / "big.png", size=32, crop="stretch")[0]
    assert (img[:, :14] <= 2).all() and (img[:, 18:] >= 253).all()


@pytest.mark.parametrize("color", [False, True])
def test_jpeg_reduced_scale_decode_matches_a_full_decode(tmp_path, color):
    # Image.draft decodes a 256² JPEG at 1/4 scale; the result must match the slow path.
    rng = np.random.default_rng(3)
    smooth = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((256, 256), Image.BICUBIC)
    smooth.save(tmp_path / "photo.jpg", quality=90)
    got = load_one(tmp_path / "photo.jpg", size=64, color=color).astype(int)
    full = Image.open(tmp_path / "photo.jpg").convert("RGB" if color else "L")
    ref = np.asarray(full.resize((64, 64), Image.LANCZOS)).astype(int)
    ref = ref[None] if ref.ndim == 2 else ref.transpose(2, 0, 1)
    assert np.abs(got - ref).mean() < 2.0


def test_gray_versus_rgb_channels(tmp_path):
    solid(RED).save(tmp_path / "r.png")
    gray = load_images([tmp_path], Preprocess(size=16, color=False))
    rgb = load_images([tmp_path], Preprocess(size=16, color=True))
    assert gray.images.shape == (1, 1, 16, 16) and rgb.images.shape == (1, 3, 16, 16)
    assert gray.images[0, 0, 0, 0] == 76  # ITU-R 601-2 luma of pure red
    assert rgb.image(0).shape == (16, 16, 3) and gray.image(0).shape == (16, 16)
    assert gray.pil_image(0).mode == "L" and rgb.pil_image(0).mode == "RGB"


def test_threshold_binarization(tmp_path):
    ramp = (np.arange(256, dtype=np.uint8).reshape(16, 16))
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    img = load_one(tmp_path / "ramp.png", size=16, binarize="threshold", threshold=0.5)[0]
    assert (img == np.where(ramp >= 128, 255, 0)).all()
    img = load_one(tmp_path / "ramp.png", size=16, binarize="threshold", threshold=0.25)[0]
    assert (img == np.where(ramp >= 64, 255, 0)).all()


def test_dither_binarization_keeps_the_tone(tmp_path):
    solid(128, (32, 32), "L").save(tmp_path / "gray.png")
    img = load_one(tmp_path / "gray.png", size=32, binarize="dither")[0]
    assert set(np.unique(img).tolist()) == {0, 255}
    assert abs(img.mean() - 128) < 12
    rgb = load_one(tmp_path / "gray.png", size=32, binarize="dither", color=True)
    assert set(np.unique(rgb).tolist()) == {0, 255} and rgb.shape == (3, 32, 32)
    result = load_images([tmp_path], Preprocess(size=32, binarize="dither"))
    assert set(np.unique(result.as_float()).tolist()) == {0.0, 1.0}


@pytest.mark.parametrize("kwargs, fragment", [
    ({"size": 15}, "between 16 and 128"),
    ({"size": 129}, "between 16 and 128"),
    ({"size": 28.0}, "whole number"),
    ({"crop": "zoom"}, "crop must be one of"),
    ({"binarize": "otsu"}, "binarize must be"),
    ({"threshold": 1.5}, "threshold"),
    ({"background": (300, 0, 0)}, "background"),
    ({"min_size": 0}, "min_size"),
    ({"max_pixels": 0}, "max_pixels"),
])
def test_preprocess_validation(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        Preprocess(**kwargs)


def test_preprocess_round_trips_through_json():
    pp = Preprocess(size=64, crop="fit", color=True, background=(1, 2, 3), binarize="dither",
                    threshold=0.3, min_size=4, max_pixels=1000)
    again = Preprocess.from_dict(json.loads(json.dumps(pp.to_dict())))
    assert again == pp and again.background == (1, 2, 3)
    assert Preprocess.from_dict({"size": 32, "from_the_future": True}) == Preprocess(size=32)


# ----------------------------------------------------------------------------- big-folder behaviour


@pytest.fixture
def colour_folder(tmp_path) -> Path:
    """12 files: 10 solid colours (value = index·20 in the red channel) and 2 broken ones."""
    for i in range(10):
        solid((i * 20, 0, 0)).save(tmp_path / f"c{i:02d}.png")
    (tmp_path / "c03b.png").write_bytes(b"")
    (tmp_path / "c07b.png").write_text("text")
    return tmp_path


@pytest.mark.parametrize("workers", [1, 3])
def test_progress_reports_every_file(colour_folder, workers):
    calls: list[tuple[int, int]] = []
    result = load_images([colour_folder], Preprocess(size=16, color=True),
                         progress=lambda d, t: calls.append((d, t)), workers=workers)
    assert calls[0] == (0, 12) and calls[-1] == (12, 12)
    assert all(t == 12 for _, t in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    if workers == 1:
        assert len(calls) == 13
    assert len(result) == 10 and len(result.rejected) == 2


@pytest.mark.parametrize("workers", [1, 2])
def test_rows_stay_in_path_order_after_rejections(colour_folder, workers):
    result = load_images([colour_folder], Preprocess(size=16, color=True), workers=workers)
    assert [Path(p).name for p in result.paths] == [f"c{i:02d}.png" for i in range(10)]
    assert result.images[:, 0, 0, 0].tolist() == [i * 20 for i in range(10)]
    assert result.images.dtype == np.uint8 and result.images.flags.c_contiguous
    assert result.images.flags.owndata and result.images.nbytes == 10 * 3 * 16 * 16


def test_cancel_from_progress_stops_the_load(colour_folder):
    cancel = threading.Event()

    def progress(done, total):
        if done >= 3:
            cancel.set()

    with pytest.raises(LoadCancelled) as info:
        load_images([colour_folder], Preprocess(size=16), progress=progress, cancel=cancel, workers=1)
    assert (info.value.done, info.value.total) == (3, 12)


def test_cancel_with_threads_and_before_start(colour_folder):
    cancel = threading.Event()
    seen: list[int] = []

    def progress(done, total):
        seen.append(done)
        if done >= 1:
            cancel.set()

    with pytest.raises(LoadCancelled) as info:
        load_images([colour_folder], Preprocess(size=16), progress=progress, cancel=cancel, workers=2)
    assert 1 <= info.value.done < 12 and max(seen) == info.value.done
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(LoadCancelled, match="after 0 of 12"):
        load_images([colour_folder], Preprocess(size=16), cancel=cancel)


def test_as_float_batches(colour_folder):
    result = load_images([colour_folder], Preprocess(size=16, color=True))
    batch = result.as_float([0, 9])
    assert batch.dtype == np.float32 and batch.shape == (2, 3, 16, 16)
    assert batch[1, 0, 0, 0] == pytest.approx(180 / 255)


# ----------------------------------------------------------------------------- augmentation


def test_augment_flips_only_when_asked():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (3, 1, 16, 16), dtype=np.uint8)
    out = augment(x, 40, np.random.default_rng(1), max_shift=0, max_zoom=0)
    assert out.shape == (40, 1, 16, 16) and out.dtype == np.uint8
    mirrors = 0
    for img in out:
        same = any((img == s).all() for s in x)
        mirrored = any((img == s[:, :, ::-1]).all() for s in x)
        assert same or mirrored
        mirrors += mirrored
    assert 5 < mirrors < 35
    plain = augment(x, 10, 2, hflip=False, max_shift=0, max_zoom=0)
    assert all(any((img == s).all() for s in x) for img in plain)


def test_augment_shifts_keep_binary_values_and_are_reproducible():
    x = np.zeros((2, 1, 16, 16), np.uint8)
    x[:, :, 4:12, 4:12] = 255
    a = augment(x, 20, 7)
    b = augment(x, 20, 7)
    assert (a == b).all()
    assert set(np.unique(a).tolist()) == {0, 255}
    assert any(not (img == x[0]).all() for img in a)  # something actually moved
    assert 40 < a.mean() < 120  # the square is still there


# ----------------------------------------------------------------------------- report & demo


def test_scan_report_text_and_json(hostile):
    text = scan_report([hostile], Preprocess(size=16), as_json=False)
    assert f"{len(VALID)} accepted, {len(BROKEN)} rejected, {len(IGNORED)} ignored" in text
    for name, fragment in BROKEN.items():
        line = next(line for line in text.splitlines() if line.strip().startswith(str(hostile / name)))
        assert fragment in line
    data = json.loads(scan_report([hostile], Preprocess(size=16), as_json=True))
    assert data["counts"] == {"accepted": len(VALID), "rejected": len(BROKEN), "ignored": len(IGNORED)}
    assert data["array"]["shape"] == [len(VALID), 1, 16, 16]
    assert {r["path"]: r["reason"] for r in data["rejected"]}[str(hostile / "broken" / "empty.png")] \
        == "empty file (0 bytes)"
    exif = next(a for a in data["accepted"] if a["path"].endswith("exif6.jpg"))
    assert exif["format"] == "JPEG" and "EXIF orientation applied" in exif["notes"]


def test_demo_set_is_built_in_small_and_learnable():
    folder = demo_folder()
    assert (folder / "make_demo.py").is_file()
    pngs = sorted(folder.glob("*.png"))
    assert 50 <= len(pngs) <= 200
    assert sum(p.stat().st_size for p in folder.iterdir()) < 1_000_000
    demo = load_demo()
    assert len(demo) == len(pngs) and not demo.rejected
    assert demo.images.shape == (len(pngs), 1, 28, 28)
    # High contrast: thresholded, every image has both ink and ground.
    binary = load_demo(Preprocess(binarize="threshold"))
    ink = (binary.images == 255).mean(axis=(1, 2, 3))
    assert (ink > 0.03).all() and (ink < 0.7).all()
    families = {Path(p).name.split("_")[0] for p in demo.paths}
    assert len(families) >= 4


# ----------------------------------------------------------------------------- links and odd names


@pytest.fixture
def dropped(tmp_path) -> Path:
    """A dropped folder with two images, next to an outside folder it links to (and to "/")."""
    inside, outside = tmp_path / "dropped", tmp_path / "outside"
    (inside / "sub").mkdir(parents=True)
    outside.mkdir()
    solid(RED).save(inside / "a.png")
    solid(GREEN).save(inside / "sub" / "b.png")
    solid(BLUE).save(outside / "secret.png")
    os.symlink("/", inside / "root")
    os.symlink(outside, inside / "elsewhere")
    os.symlink(outside / "secret.png", inside / "secret.png")
    os.symlink(inside / "sub", inside / "again")  # inside: followed, and the same folder walked once
    os.symlink(inside / "self.png", inside / "self.png")  # a link to itself
    return tmp_path


def test_links_out_of_the_dropped_folder_are_not_followed(dropped, monkeypatch):
    opened: list[str] = []
    real_open = dataset_decode._open_file
    monkeypatch.setattr(dataset_decode, "_open_file", lambda p: opened.append(str(p)) or real_open(p))
    inside = dropped / "dropped"
    result = load_images([inside], Preprocess(size=16, color=True), workers=1)
    assert rel(inside, result.paths) == ["a.png", "sub/b.png"]
    reasons = {Path(r.path).name: r.reason for r in result.rejected}
    assert reasons["root"] == "link to a folder outside the dropped folders (/): not followed"
    assert reasons["elsewhere"] == f"link to a folder outside the dropped folders ({dropped / 'outside'}): not followed"
    assert reasons["secret.png"].startswith("link to a file outside the dropped folders")
    assert reasons["self.png"] == "link loop (the link leads back to itself)"
    assert sorted(reasons) == ["elsewhere", "root", "secret.png", "self.png"]  # "again" is "sub", walked once
    assert sorted(opened) == sorted(result.paths)  # nothing outside was read


def test_follow_links_when_asked_and_links_between_dropped_folders(dropped):
    inside, outside = dropped / "dropped", dropped / "outside"
    # "elsewhere" leads into the other dropped folder: followed (it is walked there first), once.
    both = load_images([inside, outside], Preprocess(size=16), workers=1)
    assert rel(dropped, both.paths) == ["dropped/a.png", "dropped/elsewhere/secret.png", "dropped/sub/b.png"]
    reasons = {str(Path(r.path).relative_to(dropped)): r.reason for r in both.rejected}
    assert sorted(reasons) == ["dropped/root", "dropped/secret.png", "dropped/self.png"]
    assert reasons["dropped/secret.png"].startswith("same file as")
    (inside / "root").unlink()  # following a link to "/" is what the walk's bounds are for
    asked = load_images([inside], Preprocess(size=16), workers=1, follow_links=True)
    assert rel(dropped, asked.paths) == ["dropped/a.png", "dropped/elsewhere/secret.png", "dropped/sub/b.png"]


def test_the_walk_is_bounded(tmp_path, monkeypatch):
    for i in range(8):
        solid(RED).save(tmp_path / f"{i}.png")
    monkeypatch.setattr(dataset_walk, "MAX_FILES", 5)
    files, rejected = scan([tmp_path])
    assert len(files) == 5
    assert [r.reason for r in rejected] == [
        "not walked to the end: the walk stops after 5 image files; drop a smaller folder"]
    monkeypatch.setattr(dataset_walk, "MAX_FILES", 100)
    monkeypatch.setattr(dataset_walk, "MAX_ENTRIES", 3)
    files, rejected = scan([tmp_path])
    assert len(files) == 3 and "stops after 3 entries" in rejected[0].reason


def test_a_symlink_to_root_is_a_quick_refusal(tmp_path):
    os.symlink("/", tmp_path / "everything")
    solid(RED).save(tmp_path / "one.png")
    files, rejected = scan([tmp_path])
    assert [p.name for p in files] == ["one.png"]
    assert [(Path(r.path).name, r.reason) for r in rejected] == [
        ("everything", "link to a folder outside the dropped folders (/): not followed")]


def test_png_text_bomb_is_named_for_what_it_is(tmp_path):
    buf = BytesIO()
    solid(RED).save(buf, "PNG")
    png = buf.getvalue()
    bomb = png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"\x00" * (8 << 20), 9))
    at = png.index(b"IDAT") - 4
    (tmp_path / "ztxt.png").write_bytes(png[:at] + bomb + png[at:])
    itxt = png_chunk(b"iTXt", b"Comment\x00\x01\x00\x00\x00" + zlib.compress(b"\x00" * (8 << 20), 9))
    (tmp_path / "itxt.png").write_bytes(png[:-12] + itxt + png[-12:])  # after the pixels
    for name in ("ztxt.png", "itxt.png"):
        reason = reason_for(tmp_path / name, size=16)
        assert reason.startswith("PNG text chunk too large: a compressed text chunk (zTXt/iTXt) inflates past 1 MB"), reason
        assert "corrupt" not in reason


@pytest.mark.skipif(os.name != "posix", reason="file names as bytes")
def test_reports_escape_odd_file_names(tmp_path):
    folder = tmp_path / "names"
    folder.mkdir()
    solid(RED).save(os.path.join(os.fsencode(folder), b"caf\xe9.png"))  # Latin-1, not UTF-8
    solid(GREEN).save(folder / "two\nAccepted (99):\n  forged.png")
    (folder / "bad\nline.png").write_bytes(b"not an image")
    text = scan_report([folder], Preprocess(size=16))
    text.encode("utf-8")  # strict: no lone surrogates
    assert f"  {folder}/caf\\xe9.png  PNG 16×16 RGB" in text.splitlines()
    assert f"  {folder}/two\\nAccepted (99):\\n  forged.png  PNG 16×16 RGB" in text.splitlines()
    assert f"  {folder}/bad\\nline.png: not an image (looks like text)" in text.splitlines()
    assert "Accepted (99):" not in text.splitlines()
    data = json.loads(scan_report([folder], Preprocess(size=16), as_json=True).encode("utf-8"))
    assert sorted(a["path"] for a in data["accepted"]) == [f"{folder}/caf\\xe9.png",
                                                          f"{folder}/two\nAccepted (99):\n  forged.png"]
    assert dataset.display_path(b"a\xff\n") == "a\\xff\\n"
