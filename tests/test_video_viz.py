"""Video pictures: fixed-scale overlays, flow colours, contact sheets."""

import numpy as np
import pytest
from PIL import Image

from salmap.errors import UsageError
from salmap.maps import SaliencyMap
from salmap.motion import motion_saliency, synthetic_video
from salmap.viz import colorize, overlay
from salmap.viz.video import (
    ContactSheet,
    RunningScale,
    colorize_frame,
    flow_to_rgb,
    overlay_frame,
    plot_contact_sheet,
)


def test_overlay_frame_matches_the_still_image_overlay():
    rng = np.random.default_rng(0)
    image = rng.random((40, 50, 3)).astype(np.float32)
    values = rng.random((40, 50)).astype(np.float32)
    values[0, 0], values[0, 1] = 0.0, 1.0  # min-max scaling in overlay() is then a no-op
    for alpha in (0.3, 0.8):
        fast = overlay_frame(image, values, "inferno", alpha).astype(int)
        reference = np.round(overlay(image, values, "inferno", alpha) * 255).astype(int)
        # 256-level look-up table vs exact colours: off by a level or two, rarely more.
        assert np.abs(fast - reference).max() <= 5 and np.abs(fast - reference).mean() < 0.5
        uint8 = overlay_frame(np.round(image * 255).astype(np.uint8), values, "inferno", alpha)
        assert np.abs(uint8.astype(int) - reference).max() <= 5
    coloured = colorize_frame(values, "viridis").astype(int)
    assert np.abs(coloured - np.round(colorize(values, "viridis") * 255)).max() <= 6


def test_overlay_frame_does_not_rescale():
    image = np.full((10, 10, 3), 0.5, np.float32)
    weak = overlay_frame(image, np.full((10, 10), 0.1, np.float32), "gray", 1.0)
    strong = overlay_frame(image, np.full((10, 10), 0.9, np.float32), "gray", 1.0)
    assert weak.mean() < 100 < 180 < strong.mean()  # a flat map keeps its own level
    small = overlay_frame(image, np.full((5, 5), 0.9, np.float32), "gray", 1.0)
    assert small.shape == (10, 10, 3)  # maps are resized to the frame
    with pytest.raises(UsageError):
        overlay_frame(image, np.zeros((10, 10)), alpha=2.0)


def test_running_scale():
    scale = RunningScale(floor=1.0)
    quiet = scale(np.full((50, 50), 0.2, np.float32))
    assert scale.ceiling == 1.0 and quiet.max() == pytest.approx(0.2)  # noise stays dark
    busy = np.zeros((50, 50), np.float32)
    busy[:20] = 4.0
    assert scale(busy).max() == 1.0 and scale.ceiling == pytest.approx(4.0)
    assert scale(np.full((50, 50), 2.0, np.float32)).max() == pytest.approx(0.5)  # no flicker
    fixed = RunningScale(fixed=8.0)
    assert fixed(busy).max() == pytest.approx(0.5) and fixed.ceiling == 8.0


def test_flow_colours():
    flow = np.zeros((4, 8, 2), np.float32)
    flow[:, 4:, 0] = 3.0  # right half moves right
    rgb = flow_to_rgb(flow, max_speed=3.0)
    assert rgb.dtype == np.uint8 and rgb.shape == (4, 8, 3)
    assert rgb[:, :4].max() == 0  # still pixels are black
    assert tuple(rgb[0, 6]) == (255, 0, 0)  # rightwards is red at full speed
    down = flow_to_rgb(np.dstack([np.zeros((2, 2)), np.full((2, 2), 3.0)]), max_speed=3.0)
    assert down[0, 0, 1] > 200 and down[0, 0, 2] < 60  # downwards: green-yellow


def test_contact_sheet(tmp_path):
    frames = [frame for frame, _ in synthetic_video(10, (160, 120), pan=(1.0, 0.0), seed=0)]
    sheet = ContactSheet(every=4, max_rows=2, width=80)
    for result in motion_saliency(frames):
        sheet.add(result)
    # The middle frame of each stretch of four; bounded: frame 10 would be a third row.
    assert [r.extras["frame"] for r in sheet.rows] == [2, 6]
    assert sheet.rows[0].image.shape == (60, 80, 3)  # thumbnails, not full frames
    path = tmp_path / "sheet.png"
    figure = sheet.save(path, title="test")
    assert len(figure.axes) == 6
    with Image.open(path) as img:
        assert img.format == "PNG" and img.height > img.width / 3 * 2 * 0.8


def test_contact_sheet_without_flow_and_errors(tmp_path):
    result = SaliencyMap(map=np.zeros((30, 40), np.float32), image=np.zeros((30, 40, 3)))
    figure = plot_contact_sheet([result])
    assert len(figure.axes) == 2  # frame and overlay only
    with pytest.raises(UsageError):
        plot_contact_sheet([])
    with pytest.raises(UsageError):
        ContactSheet(every=0)


def test_contact_sheet_marks_shot_changes():
    frames = [f for f, _ in synthetic_video(16, (160, 120), pan=(1.5, 0), cuts=[8], seed=3)]
    sheet = ContactSheet(every=4, max_rows=4, width=80)
    for result in motion_saliency(frames):
        sheet.add(result)
    assert sheet.cuts == [8]
    assert [row.extras["shot"] for row in sheet.rows] == [0, 0, 1, 1]
    figure = sheet.save(None, title="clip")
    assert figure._suptitle.get_text() == "clip · cut at frame 8"
    titles = [axis.get_title() for axis in figure.axes[::3]]
    assert titles[2] == "frame 10 · 10.00 s · shot 2 · after a cut" and titles[3].endswith("shot 2")
    colours = [axis.title.get_color() for axis in figure.axes[::3]]
    assert colours == ["black", "black", "red", "black"]
