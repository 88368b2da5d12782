"""A texture trains on its photos at their own grain (issue 15, the 128 px preprocessing limit):
`harmonium train PHOTO --model texture` and the studio's texture runs keep each photo's middle
square at its own pixels (at most 1,024 px a side, never upscaled, 256 MB for a set), so the
random crops the trainer sees, and what it dreams, have the photo's period; a photo whose header
claims more than 64 MP is refused before a pixel is decoded, a wide one is downscaled with a
note."""
from __future__ import annotations

import math
import os
import struct
import zlib

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from PIL import Image

from models.checkpoint import load_checkpoint
from models.conv_rbm import ConvRBMTrainer
from studio.cli import main
from studio.dataset import Preprocess, load_images
from studio.dataset.texture import plan_native
from test_texture_cli import one_thread  # noqa: F401  (autouse: one torch thread, as the CLI tests)

PERIOD = 6




def stripes(size: int, period: int = PERIOD, seed: int = 0) -> np.ndarray:
    """Grey diagonal stripes of `period` px (along each axis) with a little noise, uint8."""
    y, x = np.mgrid[0:size, 0:size]
    rng = np.random.default_rng(seed)
    img = 0.5 + 0.35 * np.sin(2 * math.pi * (x + y) / period) + 0.05 * rng.standard_normal((size, size))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def axis_period(images: np.ndarray) -> float:
    """The dominant period (px, along an axis) of diagonal stripes in [n, H, W] images: the
    peak of their mean power spectrum."""
    a = images.astype(np.float64)
    a -= a.mean(axis=(1, 2), keepdims=True)
    power = (np.abs(np.fft.fft2(a)) ** 2).mean(0)
    power[0, 0] = 0
    i, j = np.unravel_index(power.argmax(), power.shape)
    h, w = power.shape
    fy, fx = min(i, h - i) / h, min(j, w - j) / w
    return math.sqrt(2) / math.hypot(fy, fx)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """One 600 × 600 px photo of stripes of period 6 px."""
    path = tmp_path_factory.mktemp("photo") / "stripes.png"
    Image.fromarray(stripes(600)).save(path)
    return path


def big_png(path, width: int, height: int) -> None:
    """A valid grey PNG of width × height zeros, written without holding its pixels: each
    block of rows is deflated once (a full flush makes blocks independent) and repeated."""
    rows = 1000
    block = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = block.compress(bytes(width + 1) * rows) + block.flush(zlib.Z_FULL_FLUSH)
    end = zlib.compressobj(9, zlib.DEFLATED, -15)
    tail = end.compress(bytes(width + 1) * (height % rows)) + end.flush(zlib.Z_FINISH)
    adler = ((height * (width + 1)) % 65521) << 16 | 1  # the Adler-32 of that many zero bytes
    data = b"\x78\x01" + chunk * (height // rows) + tail + struct.pack(">I", adler)

    def png_chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b""))


# -------------------------------------------------------------------------------- the CLI
def test_a_600px_photo_trains_at_its_own_grain_its_crops_and_dreams_keep_the_period(photo, tmp_path, monkeypatch, capsys):
    seen = []
    crops = ConvRBMTrainer._crops

    def recording(self, images, step):
        out = crops(self, images, step)
        if len(seen) < 20:
            seen.append(out.numpy().copy())
        return out

    monkeypatch.setattr(ConvRBMTrainer, "_crops", recording)
    out = tmp_path / "stripes.safetensors"
    assert main(["train", str(photo), "--model", "texture", "--hidden", "4", "--epochs", "1", "--short-run", "0", "--k", "1",
                 "--chains", "2", "--seed", "0", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "texture images: stripes.png: its middle 600×600 square, at its own grain" in err
    assert "1 images 1×600×600: 4 filters" in err
    ck = load_checkpoint(out)
    assert ck.model.config.image_shape == (1, 600, 600)
    assert (ck.preprocess["size"], ck.preprocess["native"], ck.preprocess["crop"]) == (600, True, "center")
    # the crops the trainer saw: 40 px of the photo's own stripes, period 6 px
    seen = np.concatenate(seen)[:, 0]
    assert seen.shape[1:] == (40, 40) and seen.std() > 0.2
    assert 5.3 < axis_period(seen) < 6.7
    # ... where the 128 px copy every other kind sees has lost them (period 1.3 px, under Nyquist)
    small = load_images([photo], Preprocess(size=128)).images[:, 0].astype(np.float32) / 255
    assert small.std() < 0.05
    # what it dreams has the photo's period
    texture = ck.model.synthesize(128, 128, n=1, steps=40, seed=0).float()[:, 0].numpy()
    assert texture.std() > 0.1 and 5.5 < axis_period(texture) < 6.6
    # resumed: the photo loads again as it was trained on it
    more = tmp_path / "more.safetensors"
    assert main(["train", str(photo), "--resume", str(out), "--epochs", "2", "--out", str(more), "-q"]) == 0
    again = load_checkpoint(more)
    assert again.meta["trainer"]["step"] == 200 and again.model.config.image_shape == (1, 600, 600)


def test_a_photo_claiming_20000_px_a_side_is_refused_before_a_pixel_is_decoded(tmp_path, monkeypatch, capsys):
    path = tmp_path / "huge.png"
    big_png(path, 20_000, 20_000)
    assert path.stat().st_size < 2_000_000  # a real PNG of 400 MP, small on disk
    from PIL import ImageFile

    def no_decoding(self):
        raise AssertionError("decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    assert main(["train", str(path), "--model", "texture", "--epochs", "1", "--out", str(tmp_path / "t.safetensors")]) == 1
    err = capsys.readouterr().err
    assert "huge.png: image too large: 20000×20000 claims 400 MP (limit 64 MP)\n" in err
    assert "no usable images: nothing to train on" in err and "Traceback" not in err
    assert not (tmp_path / "t.safetensors").exists()


def test_a_20000px_wide_photo_is_its_middle_square_downscaled_to_1024_with_a_note(tmp_path):
    from studio.dataset.texture import load_native

    x = np.arange(20_000)
    row = (127 + 100 * np.sign(np.sin(2 * math.pi * x / 12))).astype(np.uint8)  # bars of 12 px
    path = tmp_path / "wide.png"
    Image.fromarray(np.broadcast_to(row, (1200, 20_000)).copy()).save(path, compress_level=1)
    images, note = load_native([path])
    assert note == "wide.png: its middle 1200×1200 square downscaled to 1024 px (a texture keeps at most 1,024 px a side)"
    assert images.images.shape == (1, 1, 1024, 1024) and images.preprocess.native
    assert images.info[0].notes == ("its middle 1200×1200 square downscaled to 1024×1024",)
    assert (images.info[0].width, images.info[0].height) == (20_000, 1200)
    spectrum = np.abs(np.fft.rfft(images.images[0, 0, 0].astype(float) - 127))
    assert 9.8 < 1024 / (int(spectrum[1:].argmax()) + 1) < 10.8  # the 12 px bars at 1024/1200 of their size


def test_several_photos_train_at_the_smallest_side_and_a_set_stays_within_its_budget(tmp_path):
    for name, (w, h) in {"a.png": (300, 200), "b.png": (500, 400), "c.png": (40, 4), "d.txt": (0, 0)}.items():
        if w:
            Image.fromarray(np.zeros((h, w), np.uint8)).save(tmp_path / name)
        else:
            (tmp_path / name).write_text("notes")
    pp, note = plan_native([tmp_path])
    assert (pp.size, pp.native, pp.color) == (200, True, False)  # c.png (4 px high) will be refused
    assert note == "2 images: their middle squares at 200 px, the smallest image's side (1 of them downscaled to it, none upscaled)"
    images = load_images([tmp_path], pp)
    assert images.images.shape == (2, 1, 200, 200) and len(images.rejected) == 1
    pp, note = plan_native([tmp_path], color=True, budget=3 * 3 * 100 * 100)  # 3 image files, RGB
    assert pp.size == 100 and note.startswith("3 images: their middle squares downscaled to 100 px, so that they fit in")
    pp, _ = plan_native([tmp_path / "a.png"], max_side=64)
    assert pp.size == 64
    with pytest.raises(ValueError, match="at most 16 to 1,024 px a side"):
        plan_native([tmp_path], max_side=2048)


def test_the_native_preprocessing_is_the_texture_kinds_alone():
    with pytest.raises(ValueError, match="between 16 and 128 pixels"):
        Preprocess(size=600)
    pp = Preprocess(size=600, native=True, color=True)
    assert pp.to_dict()["native"] is True and Preprocess.from_dict(pp.to_dict()) == pp
    assert pp.describe() == "600×600, RGB, the middle square, never upscaled"
    assert "native" not in Preprocess(size=28).to_dict()  # every other kind's dicts stay as they were
    with pytest.raises(ValueError, match="between 16 and 1024 pixels"):
        Preprocess(size=2048, native=True)
    with pytest.raises(ValueError, match="middle squares"):
        Preprocess(size=64, native=True, crop="fit")
    with pytest.raises(ValueError, match="native must be true or false"):
        Preprocess.from_dict({"size": 64, "native": "yes"})


@pytest.mark.parametrize("flags, message", [
    (["--crop", "fit"], "--crop fit: a texture trains on the middle square of each photo at its own grain"),
    (["--size", "2048"], "--size for a texture is the largest side its photos keep: 16 to 1,024 px (got 2048)"),
])
def test_what_a_texture_cannot_take_is_refused_in_one_sentence(photo, tmp_path, capsys, flags, message):
    out = tmp_path / "t.safetensors"
    assert main(["train", str(photo), "--model", "texture", *flags, "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and not out.exists()


# ----------------------------------------------------------------------------- the studio
def test_a_studio_texture_run_loads_its_photo_at_its_own_grain_and_resumes_so(photo, tmp_path):
    from studio.jobs import Session
    from studio.jobs.texture import NO_CARD

    session = Session(device="cpu")
    session.open_images([str(photo)], Preprocess(size=28))
    assert session.images.shape == (1, 28, 28)  # the data page's images stay as they are
    job = session.new_job("texture", {"hidden": 3, "filter_size": 5, "epochs": 1, "batch_size": 2, "k": 1,
                                      "n_chains": 1, "seed": 0})
    assert job.preprocess is None  # known once its photos are loaded, as it starts
    job.start()
    for _ in range(3):
        assert job.step_once(timeout=60) is not None
    assert tuple(job.trainer.data.shape) == (1, 1, 600, 600) and job.model.config.image_shape == (1, 600, 600)
    assert job.preprocess["native"] is True and job.preprocess["size"] == 600
    assert job.texture_note == "stripes.png: its middle 600×600 square, at its own grain"
    assert job.quality_info()["quality_note"] == NO_CARD
    job.stop()
    saved = session.save_model(job, tmp_path / "t.safetensors")
    opened = session.open_model(saved)
    assert opened.quality_info()["quality_note"] == NO_CARD  # not "open images of this model's size"
    opened.start()
    assert opened.step_once(timeout=60) is not None
    assert tuple(opened.trainer.data.shape) == (1, 1, 600, 600) and opened.step == 4
    opened.stop()  # its run lets go of the cores it claimed (models.device.claim)
    assert opened.generator_closed
