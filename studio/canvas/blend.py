"""Separable blend modes and source-over compositing, after W3C *Compositing and
Blending Level 1* (https://www.w3.org/TR/compositing-1/).

Conventions used throughout this module
---------------------------------------
* Colour components are float32 in [0, 1], sRGB-encoded.  As the spec does
  (§ "Blending", #blending), blending happens on the encoded values; nothing is
  linearised.
* :func:`blend` computes the blend function ``B(Cb, Cs)`` on **non-premultiplied**
  (straight) colour, exactly as the spec writes it.
* :func:`composite` takes and returns **non-premultiplied** (straight) RGBA
  arrays ``(..., 4)``; it is the convenient, testable entry point.
* :func:`composite_into` is the in-place kernel the canvas renderer uses.  Its
  accumulator (the backdrop) is **premultiplied** colour ``cb = αb·Cb`` plus a
  separate alpha plane, while the source is straight colour plus alpha.  When
  the backdrop is known to be opaque (``αb ≡ 1``) its alpha plane is omitted
  and premultiplied colour equals straight colour, which saves work.

The compositing formula (§ "Blending", #blending, and § "Source Over",
#porterduffcompositingoperators_srcover)::

    Cs' = (1 - αb)·Cs + αb·B(Cb, Cs)          # blending, straight colours
    co  = αs·Cs' + αb·Cb·(1 - αs)             # source-over, premultiplied
    αo  = αs + αb·(1 - αs)

with ``αs`` already multiplied by the layer opacity.  Straight output colour is
``Co = co / αo`` (0 where ``αo = 0``).

The numerical work is done with torch tensors (multi-threaded on CPU, and
measurably faster than numpy for these element-wise chains); numpy arrays are
accepted and returned by the public helpers without copies where possible.
"""

from __future__ import annotations

import warnings
from types import MappingProxyType
from typing import Callable, Mapping, TypeAlias

import numpy as np
import torch

__all__ = [
    "BLEND_MODES",
    "ORA_COMPOSITE_OPS",
    "BLEND_MODE_FOR_ORA_OP",
    "TINY_ALPHA",
    "check_mode",
    "blend",
    "blend_tensor",
    "composite",
    "composite_into",
    "unpremultiply",
    "to_float",
]

Tensor: TypeAlias = torch.Tensor
ArrayLike: TypeAlias = "np.ndarray | Tensor"

#: Smallest positive normal float32.  Premultiplied colour is divided by
#: ``max(α, TINY_ALPHA)``: exact where α > 0 and 0 (not 0/0) where α = 0.
TINY_ALPHA = float(np.finfo(np.float32).tiny)

#: The twelve separable blend modes of § "Separable blend modes"
#: (#blendingseparable), spelled as the spec (and CSS ``mix-blend-mode``) does.
BLEND_MODES: tuple[str, ...] = (
    "normal",
    "multiply",
    "screen",
    "overlay",
    "darken",
    "lighten",
    "color-dodge",
    "color-burn",
    "hard-light",
    "soft-light",
    "difference",
    "exclusion",
)

#: Blend mode -> OpenRaster ``composite-op`` attribute value.  OpenRaster names
#: the W3C modes ``svg:<mode>``; "normal" is plain source-over, ``svg:src-over``.
ORA_COMPOSITE_OPS: Mapping[str, str] = MappingProxyType(
    {mode: ("svg:src-over" if mode == "normal" else f"svg:{mode}") for mode in BLEND_MODES}
)

#: OpenRaster ``composite-op`` -> blend mode (inverse of :data:`ORA_COMPOSITE_OPS`).
BLEND_MODE_FOR_ORA_OP: Mapping[str, str] = MappingProxyType(
    {op: mode for mode, op in ORA_COMPOSITE_OPS.items()}
)


# --------------------------------------------------------------------------
# B(Cb, Cs): the separable blend functions, § "Separable blend modes"
# --------------------------------------------------------------------------
# Each takes the straight backdrop colour ``cb`` and straight source colour
# ``cs`` (broadcastable float tensors) and returns B(Cb, Cs).


def _normal(cb: Tensor, cs: Tensor) -> Tensor:
    """§ #blendingnormal: B(Cb, Cs) = Cs."""
    return cs.expand(torch.broadcast_shapes(cb.shape, cs.shape))


def _multiply(cb: Tensor, cs: Tensor) -> Tensor:
    """§ #blendingmultiply: B(Cb, Cs) = Cb × Cs."""
    return cb * cs


def _screen(cb: Tensor, cs: Tensor) -> Tensor:
    """§ #blendingscreen: B(Cb, Cs) = Cb + Cs − (Cb × Cs)."""
    return cb + cs - cb * cs


def _hard_light(cb: Tensor, cs: Tensor) -> Tensor:
    """§ #blendinghardlight.

    ::

        if Cs <= 0.5: B = Multiply(Cb, 2×Cs)      = Cb + (2×Cs − 1)×Cb
        else:         B = Screen(Cb, 2×Cs − 1)    = Cb + (2×Cs − 1)×(1 − Cb)

    With ``s = 2×Cs − 1`` both branches are ``Cb + min(s, 0)×Cb + max(s, 0)×(1 − Cb)``
    (at ``s = 0`` both extra terms vanish), which needs no per-pixel select —
    ``torch.where`` is several times slower than these arithmetic kernels.
    """
    s = cs * 2.0 - 1.0
    out = torch.addcmul(cb, s.clamp(max=0.0), cb)
    return out.addcmul_(s.clamp_(min=0.0), 1.0 - cb)


def _overlay(cb: Tensor, cs: Tensor) -> Tensor:
    """§ #blendingoverlay: B(Cb, Cs) = HardLight(Cs, Cb) (operands swapped)."""
    return _hard_light(cs, cb)


def _darken(cb: Tensor, cs: Tensor) -> Tensor:
    """§ #blendingdarken: B(Cb, Cs) = min(Cb, Cs)."""
    return torch.minimum(cb, cs)


def _lighten(cb: Tensor, cs: Tensor) -> Tensor:
    """§ #blendinglighten: B(Cb, Cs) = max(Cb, Cs)."""
    return torch.maximum(cb, cs)


def _color_dodge(cb: Tensor, cs: Tensor) -> Tensor:
    """§ #blendingcolordodge.

    ``if Cb == 0: 0 elif Cs == 1: 1 else min(1, Cb / (1 − Cs))``

    Evaluated as ``min(1, Cb / (1 − Cs))`` with IEEE semantics, which yields the
    spec's special cases exactly: Cb > 0, Cs = 1 gives +inf, clamped to 1;
    Cb = 0, Cs < 1 gives 0; Cb = 0, Cs = 1 gives 0/0 = NaN, replaced by 0
    (the spec tests Cb == 0 first).
    """
    return torch.nan_to_num_(torch.clamp_(cb / (1.0 - cs), max=1.0), nan=0.0)


def _color_burn(cb: Tensor, cs: Tensor) -> Tensor:
    """§ #blendingcolorburn.

    ``if Cb == 1: 1 elif Cs == 0: 0 else 1 − min(1, (1 − Cb) / Cs)``

    Evaluated as ``1 − min(1, (1 − Cb) / Cs)`` with IEEE semantics: Cb < 1,
    Cs = 0 gives +inf, clamped to 1, so B = 0; Cb = 1, Cs > 0 gives B = 1;
    Cb = 1, Cs = 0 gives 0/0 = NaN, replaced by 0 so B = 1 (the spec tests
    Cb == 1 first).
    """
    ratio = torch.nan_to_num_(torch.clamp_((1.0 - cb) / cs, max=1.0), nan=0.0)
    return ratio.neg_().add_(1.0)


def _soft_light(cb: Tensor, cs: Tensor) -> Tensor:
    """§ #blendingsoftlight.

    ::

        if Cs <= 0.5: B = Cb − (1 − 2×Cs) × Cb × (1 − Cb)
        else:         B = Cb + (2×Cs − 1) × (D(Cb) − Cb)
        D(Cb) = ((16×Cb − 12) × Cb + 4) × Cb   if Cb <= 0.25
                sqrt(Cb)                        otherwise

    With ``s = 2×Cs − 1``: ``B = Cb + min(s, 0)×Cb×(1 − Cb) + max(s, 0)×(D(Cb) − Cb)``,
    the same two branches without a per-pixel select on Cs.  D's branch on Cb
    is a 0/1-weighted lerp, which returns either operand exactly.
    """
    s = cs * 2.0 - 1.0
    poly = ((cb * 16.0 - 12.0).mul_(cb).add_(4.0)).mul_(cb)
    d = torch.lerp(torch.sqrt(cb), poly, (cb <= 0.25).to(cb.dtype))
    out = torch.addcmul(cb, s.clamp(max=0.0), cb * (1.0 - cb))
    return out.addcmul_(s.clamp_(min=0.0), d.sub_(cb))


def _difference(cb: Tensor, cs: Tensor) -> Tensor:
    """§ #blendingdifference: B(Cb, Cs) = |Cb − Cs|."""
    return torch.abs(cb - cs)


def _exclusion(cb: Tensor, cs: Tensor) -> Tensor:
    """§ #blendingexclusion: B(Cb, Cs) = Cb + Cs − 2 × Cb × Cs."""
    return (cb + cs).sub_(2.0 * cb * cs)


_BLEND_FUNCTIONS: Mapping[str, Callable[[Tensor, Tensor], Tensor]] = MappingProxyType(
    {
        "normal": _normal,
        "multiply": _multiply,
        "screen": _screen,
        "overlay": _overlay,
        "darken": _darken,
        "lighten": _lighten,
        "color-dodge": _color_dodge,
        "color-burn": _color_burn,
        "hard-light": _hard_light,
        "soft-light": _soft_light,
        "difference": _difference,
        "exclusion": _exclusion,
    }
)
assert tuple(_BLEND_FUNCTIONS) == BLEND_MODES


def check_mode(mode: str) -> str:
    """Return ``mode`` if it is one of :data:`BLEND_MODES`, else raise ``ValueError``."""
    if mode not in _BLEND_FUNCTIONS:
        raise ValueError(f"unknown blend mode {mode!r}; expected one of {', '.join(BLEND_MODES)}")
    return mode


def blend_tensor(mode: str, cb: Tensor, cs: Tensor) -> Tensor:
    """``B(Cb, Cs)`` for straight float tensors (broadcastable shapes)."""
    return _BLEND_FUNCTIONS[check_mode(mode)](cb, cs)


def _as_tensor(x: ArrayLike | float) -> Tensor:
    """A float32 tensor sharing memory with ``x`` where possible.  Callers here
    never write to it, so read-only arrays are wrapped without a copy (torch
    warns about non-writable arrays; the warning is silenced for that reason)."""
    if isinstance(x, Tensor):
        return x if x.dtype == torch.float32 else x.float()
    a = np.ascontiguousarray(x, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(a)


def blend(mode: str, cb: ArrayLike | float, cs: ArrayLike | float) -> np.ndarray:
    """The blend function ``B(Cb, Cs)`` of § "Separable blend modes", per component.

    ``cb`` (backdrop) and ``cs`` (source) are straight colour values in [0, 1],
    numpy arrays, tensors or scalars of broadcastable shapes.  Returns a float32
    numpy array.
    """
    out = blend_tensor(mode, _as_tensor(cb), _as_tensor(cs))
    return out.contiguous().numpy()


# --------------------------------------------------------------------------
# Compositing: § "Blending" + § "Source Over"
# --------------------------------------------------------------------------


def composite_into(
    acc_rgb: Tensor,
    acc_alpha: Tensor | None,
    cs: Tensor,
    alpha_s: Tensor | None,
    mode: str = "normal",
    opacity: float = 1.0,
) -> None:
    """Composite one source over the accumulator **in place** (source-over with blending).

    Shapes are any in which the operands broadcast: the canvas passes
    channel-first planes — colour ``(3, h, w)``, alpha ``(1, h, w)`` — because
    broadcasting alpha over a leading axis is several times faster in torch
    than over a trailing axis of 3; :func:`composite` passes channels-last
    ``(..., 3)`` / ``(..., 1)``.

    Parameters
    ----------
    acc_rgb:
        Backdrop colour, **premultiplied** (``cb = αb·Cb``); may be a (strided)
        view into a larger canvas.  Updated in place to ``co``.  Must be 0
        wherever ``αb`` is 0 (true of any premultiplied colour).
    acc_alpha:
        Backdrop alpha ``αb``, updated in place to ``αo``; or ``None`` when the
        backdrop is opaque everywhere (it then stays opaque, since
        ``αo = αs + 1·(1 − αs) = 1``).
    cs:
        Source colour, **straight**; RGB, or a single gray channel broadcast
        across RGB.
    alpha_s:
        Source alpha, or ``None`` for an opaque source.
    mode:
        One of :data:`BLEND_MODES`.
    opacity:
        Layer opacity in [0, 1]; multiplies ``αs``.
    """
    if opacity <= 0.0:
        return  # αs = 0: co = cb, αo = αb
    a_s: Tensor | float = opacity if alpha_s is None else alpha_s * opacity

    if acc_alpha is None:
        # Opaque backdrop: αb = 1, cb = Cb, so Cs' = B(Cb, Cs) and
        # co = αs·B + (1 − αs)·Cb  (a lerp from Cb towards B by αs).
        target = cs if mode == "normal" else blend_tensor(mode, acc_rgb, cs)
        if isinstance(a_s, float) and a_s >= 1.0:
            acc_rgb.copy_(target.expand_as(acc_rgb))
        else:
            acc_rgb.lerp_(target.expand_as(acc_rgb), a_s)
        return

    if mode == "normal":
        cs_prime = cs.expand_as(acc_rgb)  # B = Cs, so Cs' = Cs
    else:
        cb_straight = acc_rgb / acc_alpha.clamp(min=TINY_ALPHA)  # cb = 0 wherever αb = 0
        b = blend_tensor(mode, cb_straight, cs)
        cs_prime = torch.lerp(cs.expand_as(b), b, acc_alpha.expand_as(b))  # (1−αb)·Cs + αb·B
    # co = αs·Cs' + (1 − αs)·cb ; αo = αs + αb·(1 − αs)
    acc_rgb.lerp_(cs_prime, a_s)
    acc_alpha.mul_(1.0 - a_s).add_(a_s)


def composite(
    backdrop: ArrayLike,
    source: ArrayLike,
    mode: str = "normal",
    opacity: float = 1.0,
) -> np.ndarray:
    """Composite ``source`` over ``backdrop`` with blend ``mode`` and ``opacity``.

    Both inputs are **straight (non-premultiplied)** RGBA float arrays in [0, 1],
    shape ``(..., 4)`` and broadcastable to each other; the result is straight
    RGBA float32 ``(..., 4)``.  Implements § "Blending" then § "Source Over"
    (see the module docstring for the formulas).
    """
    check_mode(mode)
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    b = _as_tensor(backdrop)
    s = _as_tensor(source)
    shape = torch.broadcast_shapes(b.shape, s.shape)
    if shape[-1] != 4:
        raise ValueError(f"expected RGBA arrays (..., 4), got shape {tuple(shape)}")
    b = b.expand(shape)
    s = s.expand(shape)
    acc_alpha = b[..., 3:4].clone()
    acc_rgb = b[..., :3] * acc_alpha  # premultiply the backdrop (composite_into never writes to s)
    composite_into(acc_rgb, acc_alpha, s[..., :3], s[..., 3:4], mode, float(opacity))
    return unpremultiply(acc_rgb, acc_alpha).numpy()


def unpremultiply(rgb: Tensor, alpha: Tensor | None) -> Tensor:
    """Straight RGBA ``(..., 4)`` float32 tensor from premultiplied colour and alpha.

    ``alpha=None`` means opaque.  Colour is 0 where alpha is 0; values are
    clamped to [0, 1] to absorb float rounding.
    """
    out = torch.empty((*rgb.shape[:-1], 4), dtype=torch.float32)
    if alpha is None:
        out[..., :3] = rgb
        out[..., 3] = 1.0
    else:
        torch.div(rgb, alpha.clamp(min=TINY_ALPHA), out=out[..., :3])  # premultiplied colour is 0 where α is 0
        out[..., 3:4] = alpha
    return out.clamp_(0.0, 1.0)


# --------------------------------------------------------------------------
# Pixel format helpers
# --------------------------------------------------------------------------


def to_float(pixels: np.ndarray) -> np.ndarray:
    """Any supported pixel dtype -> float32 in [0, 1].

    uint8 is divided by 255, uint16 by 65535, bool maps to {0, 1}; float input
    is clamped to [0, 1] (model outputs may overshoot).
    """
    a = np.asarray(pixels)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / np.float32(255.0)
    if a.dtype == np.uint16:
        return a.astype(np.float32) / np.float32(65535.0)
    if a.dtype == np.bool_:
        return a.astype(np.float32)
    if np.issubdtype(a.dtype, np.floating):
        out = a.astype(np.float32)  # always a copy: callers may own the result
        return np.clip(out, 0.0, 1.0, out=out)
    raise TypeError(f"unsupported pixel dtype {a.dtype}; use uint8, uint16, bool or float")
