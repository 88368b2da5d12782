"""Image ingestion: turn whatever folder an artist drops into a clean uint8 image array.

No Qt in here: the CLI (`harmonium scan`, `harmonium train`) and the studio both use it.

The pipeline, per file::

    scan ─► open (format sniffed from content) ─► size guards ─► JPEG draft ─► decode
         ─► EXIF orientation ─► normalise mode (alpha, palette, CMYK/ICC, 16/32-bit, 1-bit)
         ─► geometry (center crop | fit with padding | stretch) ─► gray/RGB ─► binarize
         ─► written straight into one preallocated uint8 array [N, C, H, W]

Promises
--------
* **Nothing per-file escapes.** Every problem with one file (truncated, empty, not an image,
  unreadable, too big, too small, ...) becomes a :class:`Rejected` entry with a reason a person
  can read.  Only programming errors in the arguments (a bad :class:`Preprocess`) raise, and
  cancellation raises :class:`LoadCancelled`.
* **No file is lost silently.** Files that are not images by name (``notes.txt``, ``.DS_Store``)
  are listed in :attr:`ImageSet.ignored`; image-named files are either loaded or rejected.
* **Memory stays close to the result.** Decoding runs in a thread pool (Pillow releases the GIL
  while decoding and resizing) and each image is written into its row of a preallocated uint8
  array; there is never a float copy of the whole set.  JPEGs are decoded at reduced scale
  (``Image.draft``), which is what makes 10,000 photos load in seconds.

Policies worth knowing
----------------------
* Tiny images: sources smaller than ``Preprocess.min_size`` (default 8 px) on either side are
  *refused*, not upscaled: a 1×1 or 4×4 image blown up to 28×28 is a flat block that carries
  nothing learnable and would quietly poison a small training set.  Images between ``min_size``
  and ``size`` are upscaled.  Set ``min_size=1`` to accept everything.
* High bit depth: 16-bit values map to 8-bit by ``round(v * 255 / 65535)`` (65535 → 255,
  32768 → 128).  32-bit integer images use their declared bit depth (TIFF BitsPerSample) and
  map ``0 .. 2**31-1`` onto ``0 .. 255``; negative values clip to 0.  Float images in [0, 1]
  are scaled by 255, other float ranges are stretched min..max (and say so in the notes).
* Colour: CMYK with an embedded ICC profile goes through LittleCMS to sRGB (relative
  colorimetric + black point compensation); CMYK without one uses Pillow's plain conversion.
  Embedded profiles of RGB images are not applied (they are nearly always sRGB-like).
* Grayscale is ITU-R 601-2 luma (Pillow's ``convert("L")``); a JPEG loaded as grayscale is
  decoded from its luma channel directly.
* Transparency (RGBA, LA, PA, palette or colour-key transparency) is composited onto
  ``Preprocess.background``; the padding of ``crop="fit"`` uses the same colour.
* Animated GIF/WebP/PNG and multi-picture files contribute their first frame.
* Binarized images are stored as 0/255 so :meth:`ImageSet.as_float` gives exactly 0.0/1.0.
  ``"dither"`` is Floyd–Steinberg (Pillow's, midpoint 128; ``threshold`` is not used).
* Decompression bombs: the header's claimed size is checked against ``Preprocess.max_pixels``
  before any pixel is decoded.  Pillow's own hard limit (``2 * Image.MAX_IMAGE_PIXELS``, about
  179 MP) still applies on top, so ``max_pixels`` above that has no effect.  Pillow's
  ``DecompressionBombWarning`` is silenced because the per-call limit replaces it.
* Links: a symbolic link in a dropped folder is followed when it leads inside the dropped
  folders; one that leads out of them (a link to ``/``, to ``/etc/shadow``) is rejected with
  its target and never read, unless ``follow_links=True``.  Loops end (each real folder is
  walked once), and a walk stops after ``MAX_ENTRIES`` entries or ``MAX_FILES`` image files,
  saying so in a rejection.
* File names in reports go through :func:`display_path`: bytes that are not UTF-8 become
  ``\\xNN`` and, in the text report, newlines and other control characters are escaped.
* Cancellation raises :class:`LoadCancelled` (a partial set would be a misleading thing to
  train on); the caller just loads again.
* If some other part of the process sets ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES = True``,
  truncated files load with grey filler instead of being rejected; this module never sets it.

Modules: ``records`` (:class:`Preprocess`, :class:`ImageSet`, :class:`ImageInfo`, :class:`Rejected`,
:class:`LoadCancelled`), ``walk`` (:func:`scan`, the bounded walk), ``decode`` (one file into one
row), ``load`` (:func:`load_images`, :func:`augment`, the demo set), ``report``
(:func:`scan_report`, :func:`display_path`).
"""

from studio.dataset.load import augment, default_workers, demo_folder, load_demo, load_images
from studio.dataset.records import ImageInfo, ImageSet, LoadCancelled, Preprocess, Rejected
from studio.dataset.report import display_path, scan_report
from studio.dataset.walk import IMAGE_EXTENSIONS, scan

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageInfo",
    "ImageSet",
    "LoadCancelled",
    "Preprocess",
    "Rejected",
    "augment",
    "default_workers",
    "demo_folder",
    "display_path",
    "load_demo",
    "load_images",
    "scan",
    "scan_report",
]
