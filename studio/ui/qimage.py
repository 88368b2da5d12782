"""numpy pixels -> ``QImage``: the one conversion every view uses (dataset thumbnails, canvas
layer thumbnails, the Latent tab's frames). No torch: the dataset panel imports it before
torch is loaded."""
from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage

from studio.images import to_uint8

__all__ = ["array_to_qimage"]


def array_to_qimage(a: np.ndarray) -> QImage:
    """uint8, uint16, bool or float [0, 1] ``H×W`` or ``H×W×C`` pixels (C = 1 gray, 2 gray + alpha, 3 RGB,
    4 RGBA) -> a ``QImage`` that owns its pixels (the array may change or go afterwards).

    Gray stays ``Grayscale8`` and RGB ``RGB888`` (a quarter and three quarters of the bytes
    of RGBA: the dataset's thousands of thumbnails stay small); images with alpha become
    premultiplied RGBA, the format Qt paints fastest."""
    a = np.asarray(a)
    if a.dtype == np.uint16:  # as studio.canvas.blend.to_float reads them (not imported: it needs torch)
        a = a.astype(np.float32) / np.float32(65535.0)
    elif a.dtype == np.bool_:
        a = a.astype(np.float32)
    a = to_uint8(a)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (2, 3, 4)):
        raise ValueError(f"expected H×W or H×W×{{1,2,3,4}} pixels, got shape {a.shape}")
    h, w = a.shape[:2]
    if a.ndim == 2:
        a = np.ascontiguousarray(a)
        return QImage(a.data, w, h, w, QImage.Format.Format_Grayscale8).copy()
    if a.shape[2] == 3:
        a = np.ascontiguousarray(a)
        return QImage(a.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    if a.shape[2] == 2:  # gray + alpha -> RGBA
        a = np.concatenate([np.repeat(a[..., :1], 3, axis=2), a[..., 1:]], axis=2)
    a = np.ascontiguousarray(a)
    image = QImage(a.data, w, h, 4 * w, QImage.Format.Format_RGBA8888)
    return image.convertToFormat(QImage.Format.Format_RGBA8888_Premultiplied)  # a copy: Qt owns it
