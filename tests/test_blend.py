"""Blend modes and compositing against W3C Compositing and Blending Level 1.

Expected values are written out by hand from the spec's formulas (and, for
the sweep tests, from a plain-Python transcription of the spec in this file),
never from studio.canvas.blend itself.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from studio.canvas.blend import (
    BLEND_MODE_FOR_ORA_OP,
    BLEND_MODES,
    ORA_COMPOSITE_OPS,
    blend,
    composite,
    to_float,
)
from studio.canvas import Canvas, Layer
from studio.images import to_uint8

TOL = 1e-6

# ---------------------------------------------------------------------------
# The spec, transcribed literally (scalar Python, float64)
# ---------------------------------------------------------------------------


def spec_B(mode: str, cb: float, cs: float) -> float:
    """B(Cb, Cs), § 'Separable blend modes', one branch per spec line."""
    if mode == "normal":
        return cs
    if mode == "multiply":
        return cb * cs
    if mode == "screen":
        return cb + cs - cb * cs
    if mode == "overlay":
        return spec_B("hard-light", cs, cb)
    if mode == "darken":
        return min(cb, cs)
    if mode == "lighten":
        return max(cb, cs)
    if mode == "color-dodge":
        if cb == 0:
            return 0.0
        if cs == 1:
            return 1.0
        return min(1.0, cb / (1 - cs))
    if mode == "color-burn":
        if cb == 1:
            return 1.0
        if cs == 0:
            return 0.0
        return 1 - min(1.0, (1 - cb) / cs)
    if mode == "hard-light":
        if cs <= 0.5:
            return spec_B("multiply", cb, 2 * cs)
        return spec_B("screen", cb, 2 * cs - 1)
    if mode == "soft-light":
        if cs <= 0.5:
            return cb - (1 - 2 * cs) * cb * (1 - cb)
        d = ((16 * cb - 12) * cb + 4) * cb if cb <= 0.25 else math.sqrt(cb)
        return cb + (2 * cs - 1) * (d - cb)
    if mode == "difference":
        return abs(cb - cs)
    if mode == "exclusion":
        return cb + cs - 2 * cb * cs
    raise AssertionError(mode)


def spec_composite(mode: str, cb: float, ab: float, cs: float, a_s: float, opacity: float) -> tuple[float, float]:
    """Straight (Co, αo): Cs' = (1 − αb)·Cs + αb·B; co = αs·Cs' + αb·Cb·(1 − αs); αo = αs + αb·(1 − αs)."""
    a_s = a_s * opacity
    cs_prime = (1 - ab) * cs + ab * spec_B(mode, cb, cs)
    co = a_s * cs_prime + ab * cb * (1 - a_s)
    ao = a_s + ab * (1 - a_s)
    return (co / ao if ao > 0 else 0.0), ao


# ---------------------------------------------------------------------------
# Names and OpenRaster ops
# ---------------------------------------------------------------------------


def test_mode_names_are_the_w3c_spellings():
    assert BLEND_MODES == (
        "normal", "multiply", "screen", "overlay", "darken", "lighten",
        "color-dodge", "color-burn", "hard-light", "soft-light", "difference", "exclusion",
    )


def test_openraster_ops():
    assert ORA_COMPOSITE_OPS["normal"] == "svg:src-over"
    assert ORA_COMPOSITE_OPS["multiply"] == "svg:multiply"
    assert ORA_COMPOSITE_OPS["color-dodge"] == "svg:color-dodge"
    assert ORA_COMPOSITE_OPS["soft-light"] == "svg:soft-light"
    assert set(ORA_COMPOSITE_OPS) == set(BLEND_MODES)
    assert all(BLEND_MODE_FOR_ORA_OP[op] == mode for mode, op in ORA_COMPOSITE_OPS.items())


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError):
        blend("plus", 0.5, 0.5)


# ---------------------------------------------------------------------------
# B(Cb, Cs) on hand-computed values
# ---------------------------------------------------------------------------

# (Cb, Cs) = (0.25, 0.75), worked by hand:
#   screen      0.25 + 0.75 − 0.1875                         = 0.8125
#   overlay     HardLight(0.75, 0.25) = Multiply(0.75, 0.5)    = 0.375
#   color-dodge min(1, 0.25 / 0.25)                          = 1
#   color-burn  1 − min(1, 0.75 / 0.75)                      = 0
#   hard-light  Screen(0.25, 0.5) = 0.25 + 0.5 − 0.125         = 0.625
#   soft-light  D(0.25) = ((4 − 12)·0.25 + 4)·0.25 = 0.5;  0.25 + 0.5·(0.5 − 0.25) = 0.375
#   exclusion   0.25 + 0.75 − 2·0.1875                       = 0.625
HAND_025_075 = {
    "normal": 0.75, "multiply": 0.1875, "screen": 0.8125, "overlay": 0.375,
    "darken": 0.25, "lighten": 0.75, "color-dodge": 1.0, "color-burn": 0.0,
    "hard-light": 0.625, "soft-light": 0.375, "difference": 0.5, "exclusion": 0.625,
}

# (Cb, Cs) = (0.6, 0.3): the other branch of the conditional modes.
#   screen      0.6 + 0.3 − 0.18                             = 0.72
#   overlay     HardLight(0.3, 0.6) = Screen(0.3, 0.2) = 0.3 + 0.2 − 0.06 = 0.44
#   color-dodge 0.6 / 0.7                                    = 6/7
#   color-burn  1 − min(1, 0.4 / 0.3)                        = 0
#   hard-light  Multiply(0.6, 0.6)                           = 0.36
#   soft-light  0.6 − (1 − 0.6)·0.6·0.4                      = 0.504
#   exclusion   0.9 − 0.36                                   = 0.54
HAND_06_03 = {
    "normal": 0.3, "multiply": 0.18, "screen": 0.72, "overlay": 0.44,
    "darken": 0.3, "lighten": 0.6, "color-dodge": 6 / 7, "color-burn": 0.0,
    "hard-light": 0.36, "soft-light": 0.504, "difference": 0.3, "exclusion": 0.54,
}


@pytest.mark.parametrize("mode", BLEND_MODES)
def test_blend_function_hand_values(mode):
    assert blend(mode, 0.25, 0.75) == pytest.approx(HAND_025_075[mode], abs=TOL)
    assert blend(mode, 0.6, 0.3) == pytest.approx(HAND_06_03[mode], abs=TOL)


@pytest.mark.parametrize(
    "mode, cb, cs, expected",
    [
        # color-burn off its clamp: 1 − (1 − 0.8) / 0.5
        ("color-burn", 0.8, 0.5, 0.6),
        # soft-light, Cs > 0.5 and Cb > 0.25 uses D = sqrt: 0.64 + 0.6·(0.8 − 0.64)
        ("soft-light", 0.64, 0.8, 0.736),
        # soft-light, Cb <= 0.25 uses the cubic D(0.1) = ((1.6 − 12)·0.1 + 4)·0.1 = 0.296
        ("soft-light", 0.1, 1.0, 0.296),
        # hard-light at the 0.5 boundary takes the multiply branch: 0.4·2·0.5
        ("hard-light", 0.4, 0.5, 0.4),
        # color-dodge special cases, in the spec's order
        ("color-dodge", 0.0, 1.0, 0.0),   # Cb == 0 wins over Cs == 1
        ("color-dodge", 0.5, 1.0, 1.0),   # Cs == 1
        ("color-dodge", 0.0, 0.3, 0.0),   # Cb == 0
        ("color-dodge", 0.5, 0.75, 1.0),  # 0.5 / 0.25 = 2, clamped to 1
        # color-burn special cases, in the spec's order
        ("color-burn", 1.0, 0.0, 1.0),    # Cb == 1 wins over Cs == 0
        ("color-burn", 0.5, 0.0, 0.0),    # Cs == 0
        ("color-burn", 1.0, 0.3, 1.0),    # Cb == 1
    ],
)
def test_blend_branches_and_edge_cases(mode, cb, cs, expected):
    assert blend(mode, cb, cs) == pytest.approx(expected, abs=TOL)


@pytest.mark.parametrize("mode", BLEND_MODES)
def test_blend_matches_spec_on_a_grid(mode):
    values = np.array([0.0, 0.1, 0.25, 0.3, 0.5, 0.6, 0.75, 0.9, 1.0], dtype=np.float32)
    cb, cs = np.meshgrid(values, values, indexing="ij")
    got = blend(mode, cb, cs)
    expected = np.vectorize(lambda b, s: spec_B(mode, float(b), float(s)))(cb, cs)
    np.testing.assert_allclose(got, expected, atol=2e-6)
    assert np.isfinite(got).all()


def test_blend_broadcasts_gray_over_rgb():
    cb = np.array([[0.2, 0.4, 0.6]], dtype=np.float32)
    out = blend("multiply", cb, np.array([[0.5]], dtype=np.float32))
    np.testing.assert_allclose(out, [[0.1, 0.2, 0.3]], atol=TOL)


# ---------------------------------------------------------------------------
# Compositing: § 'Blending' + § 'Source Over', opacity and alpha
# ---------------------------------------------------------------------------


def rgba(c: float, a: float) -> np.ndarray:
    return np.array([c, c, c, a], dtype=np.float32)


def test_composite_opaque_with_opacity_by_hand():
    # multiply, Cb = 0.25, Cs = 0.75, αs = 1·0.5:
    # co = 0.5·0.1875 + 1·0.25·0.5 = 0.21875, αo = 0.5 + 0.5 = 1
    out = composite(rgba(0.25, 1.0), rgba(0.75, 1.0), "multiply", opacity=0.5)
    np.testing.assert_allclose(out, [0.21875, 0.21875, 0.21875, 1.0], atol=TOL)


def test_composite_partial_alpha_by_hand():
    # screen, Cb = 0.25 αb = 0.5, Cs = 0.75 αs = 0.8·0.5 = 0.4:
    # B = 0.8125; Cs' = 0.5·0.75 + 0.5·0.8125 = 0.78125
    # co = 0.4·0.78125 + 0.5·0.25·0.6 = 0.3875; αo = 0.4 + 0.5·0.6 = 0.7; Co = 0.3875 / 0.7
    out = composite(rgba(0.25, 0.5), rgba(0.75, 0.8), "screen", opacity=0.5)
    np.testing.assert_allclose(out, [0.3875 / 0.7] * 3 + [0.7], atol=TOL)


def test_composite_over_transparent_backdrop_is_the_source():
    out = composite(rgba(0.9, 0.0), rgba(0.75, 0.6), "color-burn", opacity=0.5)
    np.testing.assert_allclose(out, [0.75, 0.75, 0.75, 0.3], atol=TOL)


def test_transparent_source_leaves_backdrop():
    out = composite(rgba(0.25, 0.7), rgba(0.75, 0.0), "difference")
    np.testing.assert_allclose(out, rgba(0.25, 0.7), atol=TOL)


@pytest.mark.parametrize("mode", BLEND_MODES)
@pytest.mark.parametrize(
    "cb, ab, cs, a_s, opacity",
    [
        (0.25, 1.0, 0.75, 1.0, 1.0),
        (0.25, 1.0, 0.75, 1.0, 0.5),
        (0.6, 1.0, 0.3, 0.5, 0.8),
        (0.25, 0.5, 0.75, 0.8, 0.5),
        (0.8, 0.3, 0.1, 1.0, 1.0),
        (0.0, 0.6, 1.0, 0.7, 1.0),
        (1.0, 0.6, 0.0, 0.7, 0.9),
    ],
)
def test_composite_matches_spec(mode, cb, ab, cs, a_s, opacity):
    co, ao = spec_composite(mode, cb, ab, cs, a_s, opacity)
    out = composite(rgba(cb, ab), rgba(cs, a_s), mode, opacity)
    np.testing.assert_allclose(out, [co, co, co, ao], atol=2e-6)


def test_composite_is_per_channel():
    backdrop = np.array([0.2, 0.5, 0.9, 1.0], dtype=np.float32)
    source = np.array([0.9, 0.5, 0.1, 1.0], dtype=np.float32)
    out = composite(backdrop, source, "darken")
    np.testing.assert_allclose(out, [0.2, 0.5, 0.1, 1.0], atol=TOL)


def test_composite_rejects_bad_input():
    with pytest.raises(ValueError):
        composite(rgba(0.5, 1), rgba(0.5, 1), "normal", opacity=1.5)
    with pytest.raises(ValueError):
        composite(np.zeros(3), np.zeros(3))


# ---------------------------------------------------------------------------
# The canvas renderer uses the same formulas (opaque and transparent backdrops)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", BLEND_MODES)
@pytest.mark.parametrize("background", [(0.25, 0.25, 0.25, 1.0), (0.25, 0.25, 0.25, 0.5)])
def test_canvas_layer_blends_per_spec(mode, background):
    canvas = Canvas(4, 3, background=background)
    source = np.empty((3, 4, 4), dtype=np.float32)
    source[..., :3] = 0.75
    source[..., 3] = 0.8
    canvas.add_layer(Layer(name="src", source=source, blend_mode=mode, opacity=0.5))
    co, ao = spec_composite(mode, 0.25, background[3], 0.75, 0.8, 0.5)
    out = canvas.render()
    assert out.shape == (3, 4, 4) and out.dtype == np.float32
    np.testing.assert_allclose(out, np.broadcast_to([co, co, co, ao], out.shape), atol=2e-6)


def test_uint8_conversions():
    np.testing.assert_array_equal(to_uint8(np.array([0.0, 0.5, 1.0, 1.2, -0.1])), [0, 128, 255, 255, 0])
    np.testing.assert_array_equal(to_float(np.array([0, 255], dtype=np.uint8)), [0.0, 1.0])
