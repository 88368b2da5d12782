"""The Canvas model: layer pipeline (scale, tiling, colour), undo/redo, events, render cache."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from studio.images import to_uint8
from studio.canvas import (
    MAX_CANVAS_SIZE,
    Canvas,
    GradientMap,
    Layer,
    Levels,
    Palette,
    Renderer,
)


def gray(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def ramp(h: int, w: int) -> np.ndarray:
    """A uint8 image whose every pixel is distinct: value = 10·row + col (+1)."""
    return (np.arange(h)[:, None] * 10 + np.arange(w)[None, :] + 1).astype(np.uint8)


def lone(layer: Layer, width: int, height: int) -> np.ndarray:
    """The layer alone, as it lands on a width×height canvas."""
    canvas = Canvas(width, height, background=None)
    canvas.add_layer(layer)
    return canvas.render_layer(layer.id)


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


def test_canvas_size_is_validated():
    Canvas(MAX_CANVAS_SIZE, MAX_CANVAS_SIZE)  # allowed (nothing is allocated until render)
    for w, h in [(MAX_CANVAS_SIZE + 1, 10), (10, 0), (0, 5)]:
        with pytest.raises(ValueError):
            Canvas(w, h)
    canvas = Canvas(8, 8)
    with pytest.raises(ValueError):
        canvas.resize(5000, 8)


@pytest.mark.parametrize(
    "bad",
    [
        {"blend_mode": "plus"},
        {"opacity": 1.5},
        {"scale": 0},
        {"resample": "lanczos"},
        {"tiling": "wrap"},
        {"x": 1.5},
        {"levels": (0.5, 0.5, 1.0, 0.0, 1.0)},
        {"source": np.zeros((4, 4, 5))},
    ],
)
def test_layer_settings_are_validated(bad):
    with pytest.raises((ValueError, TypeError)):
        Layer(**{"source": np.zeros((4, 4)), **bad})


def test_layer_source_is_read_only_and_kept_by_identity():
    src = np.zeros((4, 4, 3), np.uint8)
    layer = Layer(source=src)
    assert not layer.source.flags.writeable
    assert src.flags.writeable  # the caller's array is left alone
    moved = dataclasses.replace(layer, x=3)
    assert moved.source is layer.source


# ---------------------------------------------------------------------------
# Transform: scale, placement, tiling
# ---------------------------------------------------------------------------


def test_nearest_upscale_replicates_pixels_exactly():
    src = np.array([[0, 85], [170, 255]], dtype=np.uint8)
    out = lone(Layer(source=src, scale=3, resample="nearest"), 6, 6)
    expected = np.repeat(np.repeat(src, 3, axis=0), 3, axis=1) / 255.0
    np.testing.assert_array_equal(out[..., 0], expected.astype(np.float32))
    np.testing.assert_array_equal(out[..., 1], out[..., 0])  # gray spreads over RGB
    np.testing.assert_array_equal(out[..., 3], 1.0)


@pytest.mark.parametrize("resample", ["bilinear", "bicubic"])
def test_smooth_upscale_stays_in_range_and_interpolates(resample):
    src = np.array([[0, 255]], dtype=np.uint8)
    out = lone(Layer(source=src, scale=8, resample=resample), 16, 8)
    row = out[4, :, 0]
    assert row.min() >= 0.0 and row.max() <= 1.0
    assert row[0] == pytest.approx(0.0, abs=1e-6) and row[-1] == pytest.approx(1.0, abs=1e-6)
    assert np.all(np.diff(row) >= -1e-6) and 0.3 < row[8] < 0.7  # a ramp, not a step


def test_resampling_does_not_bleed_colour_from_transparent_pixels():
    # opaque blue next to fully transparent red: the blended edge must stay blue.
    src = np.array([[[0, 0, 255, 255], [255, 0, 0, 0]]], dtype=np.uint8)
    out = lone(Layer(source=src, scale=4, resample="bilinear"), 8, 4)
    partly = (out[..., 3] > 0.01) & (out[..., 3] < 0.99)
    assert partly.any()
    np.testing.assert_allclose(out[partly][:, :3], np.tile([0.0, 0.0, 1.0], (partly.sum(), 1)), atol=1e-5)


def test_placement_and_clipping():
    src = ramp(3, 4)
    layer = Layer(source=src, x=-1, y=2)
    out = lone(layer, 5, 4)
    expected = np.zeros((4, 5), np.float32)
    expected[2:4, 0:3] = src[0:2, 1:4] / 255.0
    np.testing.assert_array_equal(out[..., 0], expected)
    np.testing.assert_array_equal(out[..., 3] > 0, expected > 0)
    canvas = Canvas(5, 4)
    canvas.add_layer(layer)
    assert canvas.layer_bounds(layer.id) == (0, 2, 3, 4)
    assert canvas.layer_bounds(canvas.move_layer(layer.id, 10, 10)) is None


def test_plain_tiling_repeats_from_the_origin():
    tile = ramp(2, 3)
    out = lone(Layer(source=tile, tiling="plain", x=1, y=1), 8, 5)[..., 0]
    for y in range(5):
        for x in range(8):
            assert out[y, x] == np.float32(tile[(y - 1) % 2, (x - 1) % 3] / 255.0)


def test_mirror_tiling_flips_odd_tiles_and_is_seamless():
    tile = ramp(2, 3)
    out = lone(Layer(source=tile, tiling="mirror", x=0, y=0), 12, 8)[..., 0]
    tw, th = 3, 2
    for y in range(8):
        for x in range(12):
            i, j = x // tw, y // th
            tx = x % tw if i % 2 == 0 else tw - 1 - x % tw
            ty = y % th if j % 2 == 0 else th - 1 - y % th
            assert out[y, x] == np.float32(tile[ty, tx] / 255.0)
    # Seamless: across every tile edge the neighbouring pixels repeat the edge pixel.
    for edge in range(tw, 12, tw):
        np.testing.assert_array_equal(out[:, edge - 1], out[:, edge])
    for edge in range(th, 8, th):
        np.testing.assert_array_equal(out[edge - 1, :], out[edge, :])


def test_plain_tiling_has_seams_where_mirror_does_not():
    tile = ramp(2, 3)
    plain = lone(Layer(source=tile, tiling="plain"), 6, 2)[..., 0]
    assert not np.array_equal(plain[:, 2], plain[:, 3])  # edge pixel jumps back to column 0
    np.testing.assert_array_equal(plain[:, 3], plain[:, 0])


def test_tiling_with_scale_and_negative_origin():
    tile = ramp(2, 2)
    out = lone(Layer(source=tile, tiling="plain", scale=2, resample="nearest", x=-1, y=-3), 6, 6)[..., 0]
    big = np.repeat(np.repeat(tile, 2, 0), 2, 1)
    for y in range(6):
        for x in range(6):
            assert out[y, x] == np.float32(big[(y + 3) % 4, (x + 1) % 4] / 255.0)


# ---------------------------------------------------------------------------
# Colour: gradient map, palette, invert, levels
# ---------------------------------------------------------------------------


def test_gradient_map_black_to_red():
    src = gray([[0.0, 0.25, 0.5, 1.0]])
    out = lone(Layer(source=src, colourise=[(0, (0, 0, 0)), (1, (1, 0, 0))]), 4, 1)
    np.testing.assert_allclose(out[0, :, :3], [[0, 0, 0], [0.25, 0, 0], [0.5, 0, 0], [1, 0, 0]], atol=1e-6)


def test_gradient_map_three_stops_and_colour_luminance():
    gm = GradientMap(((0.0, "#000000"), (0.5, (0.0, 0.0, 1.0)), (1.0, (1.0, 1.0, 1.0))))
    # pure red has luminance 0.3 (W3C Lum weights 0.3, 0.59, 0.11) -> 0.6 of the way to blue
    src = np.array([[[0.0, 0, 0], [1.0, 0, 0], [0.75, 0.75, 0.75]]], dtype=np.float32)
    out = lone(Layer(source=src, colourise=gm), 3, 1)
    np.testing.assert_allclose(out[0, :, :3], [[0, 0, 0], [0, 0, 0.6], [0.5, 0.5, 1.0]], atol=1e-6)


def test_palette_bands():
    pal = Palette(((0.1, 0.0, 0.0), (0.0, 0.2, 0.0), (0.0, 0.0, 0.3), (1.0, 1.0, 1.0)))
    src = gray([[0.1, 0.3, 0.6, 0.99, 1.0, 0.0]])
    out = lone(Layer(source=src, colourise=pal), 6, 1)
    bands = [0, 1, 2, 3, 3, 0]
    np.testing.assert_allclose(out[0, :, :3], [pal.colours[b] for b in bands], atol=1e-6)


def test_colourise_settings_round_trip_through_plain_data():
    gm = GradientMap(((0.0, "#000000"), (1.0, (1.0, 0.0, 0.0))))
    pal = Palette(("#ff0000", (0.0, 1.0, 0.0)))
    src = np.zeros((2, 2))
    assert Layer(source=src, colourise=gm.to_dict()).colourise == gm
    assert Layer(source=src, colourise=[[0, [0, 0, 0]], [1, [1, 0, 0]]]).colourise == gm
    assert Layer(source=src, colourise=pal.to_dict()).colourise == pal
    assert Layer(source=src, colourise=[(1, 0, 0), (0, 1, 0)]).colourise == pal
    assert Layer(source=src, levels={"gamma": 2.0}).levels == Levels(gamma=2.0)


def test_invert_and_levels():
    src = gray([[0.2, 0.35, 0.5, 0.9]])
    inv = lone(Layer(source=src, invert=True), 4, 1)[0, :, 0]
    np.testing.assert_allclose(inv, [0.8, 0.65, 0.5, 0.1], atol=1e-6)
    # (x − 0.2) / 0.6, clipped -> [0, 0.25, 0.5, 1]
    lv = lone(Layer(source=src, levels=Levels(0.2, 0.8)), 4, 1)[0, :, 0]
    np.testing.assert_allclose(lv, [0.0, 0.25, 0.5, 1.0], atol=1e-6)
    # gamma 2 brightens: 0.25 ** (1/2) = 0.5; output range 0.2..0.6 -> 0.2 + 0.4·v
    lv = lone(Layer(source=src, levels=Levels(0.2, 0.8, 2.0, 0.2, 0.6)), 4, 1)[0, :, 0]
    np.testing.assert_allclose(lv, 0.2 + 0.4 * np.array([0.0, 0.5, np.sqrt(0.5), 1.0]), atol=1e-6)


def test_colour_operations_apply_in_order_colourise_invert_levels():
    src = gray([[0.5]])
    layer = Layer(source=src, colourise=[(0, (0, 0, 0)), (1, (1, 0, 0))], invert=True, levels=Levels(0.0, 1.0, 1.0, 0.0, 0.5))
    # colourise -> (0.5, 0, 0); invert -> (0.5, 1, 1); levels out 0..0.5 -> (0.25, 0.5, 0.5)
    np.testing.assert_allclose(lone(layer, 1, 1)[0, 0, :3], [0.25, 0.5, 0.5], atol=1e-6)


def test_alpha_survives_colour_operations():
    src = np.array([[[0.5, 0.5]]], dtype=np.float32)  # gray + alpha
    out = lone(Layer(source=src, colourise=[(0, (0, 0, 0)), (1, (0, 1, 0))], invert=True), 1, 1)
    np.testing.assert_allclose(out[0, 0], [1.0, 0.5, 1.0, 0.5], atol=1e-6)


# ---------------------------------------------------------------------------
# Undo / redo
# ---------------------------------------------------------------------------


def full_state(canvas: Canvas):
    return (
        canvas.width,
        canvas.height,
        canvas.background,
        [layer.settings() for layer in canvas.layers],
        [layer.pixels for layer in canvas.layers],
    )


def assert_same_state(canvas: Canvas, recorded) -> None:
    (w, h, bg, settings, pixels, rendered) = recorded
    assert (canvas.width, canvas.height, canvas.background) == (w, h, bg)
    assert [layer.settings() for layer in canvas.layers] == settings
    assert all(a is b for a, b in zip((layer.pixels for layer in canvas.layers), pixels, strict=True))
    np.testing.assert_array_equal(canvas.render(), rendered)
    # and a renderer with empty caches agrees, so the cache is not hiding anything
    np.testing.assert_array_equal(Renderer().render(canvas.snapshot()), rendered)


def make_canvas() -> tuple[Canvas, list[Layer]]:
    rng = np.random.default_rng(7)
    canvas = Canvas(24, 16, background=(0.9, 0.85, 0.8))
    layers = [
        Layer(name="texture", source=(rng.random((4, 4)) * 255).astype(np.uint8), tiling="mirror", scale=2,
              resample="nearest", provenance={"model": "rbm", "seed": 1}),
        Layer(name="image", source=rng.random((10, 12, 3)).astype(np.float32), x=3, y=2, blend_mode="multiply"),
        Layer(name="cutout", source=rng.random((6, 6, 4)).astype(np.float32), x=14, y=8, scale=1.5,
              resample="bicubic", blend_mode="screen", opacity=0.7),
    ]
    return canvas, layers


def test_undo_redo_restores_exact_state_across_a_sequence():
    canvas, (a, b, c) = make_canvas()
    operations = [
        lambda: canvas.add_layer(a),
        lambda: canvas.add_layer(b),
        lambda: canvas.add_layer(c),
        lambda: canvas.set_layer(b.id, opacity=0.4),
        lambda: canvas.set_layer(c.id, blend_mode="soft-light"),
        lambda: canvas.move_layer(b.id, -2, 5),
        lambda: canvas.reorder_layer(c.id, 0),
        lambda: canvas.duplicate_layer(b.id),
        lambda: canvas.set_layer(a.id, colourise=Palette(((0, 0, 0), (1, 0.5, 0))), invert=True),
        lambda: canvas.set_layer(b.id, levels=Levels(0.1, 0.9, 1.5, 0, 1), scale=2.0, resample="bilinear"),
        lambda: canvas.set_layer(a.id, visible=False),
        lambda: canvas.remove_layer(b.id),
        lambda: canvas.set_background(None),
        lambda: canvas.resize(20, 20),
        lambda: canvas.set_layer(c.id, tiling="plain", x=3, name="renamed"),
    ]

    def record():
        return (*full_state(canvas), canvas.render().copy())

    states = [record()]
    for op in operations:
        op()
        states.append(record())
    # every step changed something visible or structural
    assert all(s1[3] != s0[3] or s1[:3] != s0[:3] for s0, s1 in zip(states, states[1:]))

    for expected in reversed(states[:-1]):
        assert canvas.undo()
        assert_same_state(canvas, expected)
    assert not canvas.can_undo and not canvas.undo()
    for expected in states[1:]:
        assert canvas.redo()
        assert_same_state(canvas, expected)
    assert not canvas.can_redo and not canvas.redo()


def test_new_edit_clears_redo_and_labels_describe_steps():
    canvas, (a, b, _) = make_canvas()
    canvas.add_layer(a)
    canvas.set_layer(a.id, opacity=0.5)
    assert "opacity" in canvas.undo_label
    canvas.undo()
    assert canvas.can_redo and "opacity" in canvas.redo_label
    canvas.add_layer(b)
    assert not canvas.can_redo


def test_merge_folds_slider_drags_into_one_step():
    canvas, (a, *_) = make_canvas()
    canvas.add_layer(a)
    for value in (0.9, 0.8, 0.7, 0.6):
        canvas.set_layer(a.id, opacity=value, merge=True)
    assert canvas.layer(a.id).opacity == 0.6
    canvas.undo()
    assert canvas.layer(a.id).opacity == 1.0
    canvas.redo()
    assert canvas.layer(a.id).opacity == 0.6


def test_macro_is_one_undo_step():
    canvas, (a, b, _) = make_canvas()
    canvas.add_layer(a)
    before = canvas.render().copy()
    with canvas.macro("Style"):
        canvas.set_layer(a.id, blend_mode="overlay", opacity=0.3)
        canvas.add_layer(b)
        canvas.move_layer(b.id, 1, 1)
    assert canvas.undo_label == "Style" and len(canvas.layers) == 2
    canvas.undo()
    assert len(canvas.layers) == 1 and canvas.layer(a.id).blend_mode == "normal"
    np.testing.assert_array_equal(canvas.render(), before)


def test_no_op_edits_are_not_recorded():
    canvas, (a, *_) = make_canvas()
    canvas.add_layer(a)
    canvas.set_layer(a.id, opacity=1.0)
    canvas.reorder_layer(a.id, 0)
    canvas.undo()
    assert not canvas.can_undo


def test_set_layer_rejects_unknown_fields_and_id_changes():
    canvas, (a, *_) = make_canvas()
    canvas.add_layer(a)
    with pytest.raises(AttributeError):
        canvas.set_layer(a.id, brightness=2)
    with pytest.raises(ValueError):
        canvas.set_layer(a.id, id="other")
    with pytest.raises(ValueError):
        canvas.add_layer(a)


def test_duplicate_shares_pixels_and_sits_above():
    canvas, (a, b, _) = make_canvas()
    canvas.add_layer(a)
    canvas.add_layer(b)
    copy = canvas.duplicate_layer(a.id)
    assert [layer.id for layer in canvas.layers] == [a.id, copy.id, b.id]
    assert copy.source is a.source and copy.id != a.id and copy.name == "texture copy"
    assert copy.blend_settings() == a.blend_settings()


# ---------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------


def test_events_report_changes_and_undo():
    canvas, (a, b, _) = make_canvas()
    seen: list[tuple[str, tuple]] = []

    def record(info) -> None:  # every signal of the group, through its relay
        seen.append((info.signal.name, info.args))

    canvas.events.all.connect(record)
    canvas.add_layer(a)
    canvas.add_layer(b)
    canvas.set_layer(a.id, opacity=0.5, blend_mode="darken")
    canvas.reorder_layer(b.id, 0)
    canvas.undo()
    kinds = [name for name, _ in seen if name != "history_changed"]
    assert kinds == ["layer_added", "layer_added", "layer_changed", "layers_reordered", "layers_reordered"]
    assert [args for name, args in seen if name == "layer_added"] == [(a.id,), (b.id,)]
    changed = next(args for name, args in seen if name == "layer_changed")
    assert changed[0] == a.id and set(changed[1]) == {"opacity", "blend_mode"}
    assert any(name == "history_changed" for name, _ in seen)
    canvas.events.all.disconnect(record)
    n = len(seen)
    canvas.set_background("#000000")
    assert len(seen) == n


# ---------------------------------------------------------------------------
# Render cache
# ---------------------------------------------------------------------------


def test_render_cache_invalidates_on_change_and_undo_restores_pixels():
    canvas, layers = make_canvas()
    for layer in layers:
        canvas.add_layer(layer)
    before = canvas.render().copy()
    for change in [
        {"opacity": 0.3},
        {"blend_mode": "difference"},
        {"levels": Levels(0.0, 1.0, 2.0, 0.0, 1.0)},
        {"x": 5},
        {"scale": 2.0},
        {"colourise": GradientMap(((0, (0, 0, 0)), (1, (0, 0, 1))))},
        {"visible": False},
    ]:
        canvas.set_layer(layers[1].id, **change)
        after = canvas.render()
        assert not np.array_equal(after, before), change
        np.testing.assert_array_equal(after, Renderer().render(canvas.snapshot()))
        canvas.undo()
        np.testing.assert_array_equal(canvas.render(), before)


def test_rendered_array_is_read_only():
    canvas, layers = make_canvas()
    canvas.add_layer(layers[0])
    out = canvas.render()
    with pytest.raises(ValueError):
        out[0, 0, 0] = 0.5


def test_editing_opacity_reblends_without_repreparing():
    canvas, layers = make_canvas()
    for layer in layers:
        canvas.add_layer(layer)
    canvas.render()
    r = canvas.renderer
    canvas.set_layer(layers[1].id, opacity=0.5)
    canvas.render()  # first edit of this layer: stores the composite below it
    prepares, blends = r.stats["prepares"], r.stats["blends"]
    canvas.set_layer(layers[1].id, opacity=0.6, merge=True)
    canvas.render()
    assert r.stats["prepares"] == prepares  # no layer was re-scaled / re-coloured
    assert r.stats["blends"] - blends == 2  # the edited layer and the one above it
    assert r.stats["prefix_hits"] >= 1


def test_incremental_renders_match_fresh_renders_through_many_edits():
    canvas, layers = make_canvas()
    canvas.set_background((0.2, 0.3, 0.4, 0.6))  # transparent-ish: exercises the alpha path
    for layer in layers:
        canvas.add_layer(layer)
    rng = np.random.default_rng(3)
    for step in range(25):
        layer = layers[step % 3]
        canvas.set_layer(layer.id, opacity=float(rng.uniform(0.1, 1.0)),
                         blend_mode=["multiply", "overlay", "normal", "color-burn", "lighten"][step % 5])
        np.testing.assert_array_equal(canvas.render(), Renderer().render(canvas.snapshot()))


def test_opaque_bottom_layer_over_transparent_canvas():
    canvas = Canvas(4, 4, background=None)
    canvas.add_layer(Layer(source=np.full((4, 4, 3), 0.25, np.float32)))
    canvas.add_layer(Layer(source=np.full((2, 2, 4), 0.75, np.float32), blend_mode="multiply"))
    out = canvas.render()
    # top-left 2×2: multiply with αs = 0.75 over opaque 0.25 -> 0.75·0.1875 + 0.25·0.25
    np.testing.assert_allclose(out[:2, :2], np.broadcast_to([0.203125] * 3 + [1.0], (2, 2, 4)), atol=1e-6)
    np.testing.assert_allclose(out[2:, 2:], np.broadcast_to([0.25] * 3 + [1.0], (2, 2, 4)), atol=1e-6)


@pytest.mark.parametrize("background", [(0.9, 0.85, 0.8), (0.2, 0.3, 0.4, 0.6), None])
def test_uint8_render_equals_quantised_float_render(background):
    canvas, layers = make_canvas()
    canvas.set_background(background)
    for layer in layers:
        canvas.add_layer(layer)
    canvas.set_layer(layers[0].id, opacity=0.5)  # let the transparent canvas show through
    direct = Renderer().render_uint8(canvas.snapshot())
    np.testing.assert_array_equal(direct, to_uint8(Renderer().render(canvas.snapshot())))
    np.testing.assert_array_equal(canvas.render_uint8(), direct)


def test_empty_and_transparent_canvases():
    np.testing.assert_array_equal(Canvas(3, 2, background=None).render(), np.zeros((2, 3, 4), np.float32))
    white = Canvas(3, 2).render_uint8()
    assert white.dtype == np.uint8 and (white == 255).all()


def test_layer_cache_smaller_than_the_layers_still_renders_correctly():
    canvas, layers = make_canvas()
    for layer in layers:
        canvas.add_layer(layer)
    expected = Renderer().render(canvas.snapshot())
    one_layer = 24 * 16 * 4 * 4  # roughly one canvas-sized tiled layer
    small = Renderer(layer_cache_bytes=one_layer, composite_cache_bytes=0)
    for _ in range(3):
        np.testing.assert_array_equal(small.render(canvas.snapshot()), expected)
    # scan-resistant: what fits stays cached instead of being evicted every pass
    assert small.stats["prepares"] < 3 * len(layers)


def test_render_restores_torch_threads():
    import torch

    before = torch.get_num_threads()
    canvas, layers = make_canvas()
    canvas.add_layer(layers[0])
    canvas.renderer.threads = 1
    canvas.render()
    assert torch.get_num_threads() == before


def test_large_buffers_are_usable():
    from studio.canvas.render import _alloc

    t = _alloc((9, 1024, 1024))  # 36 MiB: the huge-page path where available
    t.fill_(0.5)
    assert t.shape == (9, 1024, 1024) and float(t[8, 1023, 1023]) == 0.5
    arr = t.numpy()
    assert arr.flags.writeable and arr.dtype == np.float32


# ---------------------------------------------------------------------------
# Animated sources
# ---------------------------------------------------------------------------


def test_animated_layer_frames():
    frames = [np.full((2, 2), v, np.float32) for v in (0.0, 0.5, 1.0)]
    canvas = Canvas(2, 2, background=None)
    layer = canvas.add_layer(Layer(name="anim", frames=frames))
    assert layer.source is layer.frames[0]
    np.testing.assert_allclose(canvas.render()[..., 0], 0.0)
    canvas.set_layer(layer.id, frame_index=1)
    np.testing.assert_allclose(canvas.render()[..., 0], 0.5)
    rendered = canvas.render_frames(layer.id)
    assert [float(f[0, 0, 0]) for f in rendered] == [0.0, 0.5, 1.0]
    assert canvas.layer(layer.id).frame_index == 1  # rendering frames is not an edit
    with pytest.raises(ValueError):
        canvas.set_layer(layer.id, frame_index=3)
