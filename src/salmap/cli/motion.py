"""``salmap motion VIDEO``: what moves in a video, with the camera's motion removed."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import numpy as np

from salmap.cli.common import check_output_path, default_output, print_json
from salmap.errors import UsageError

__all__ = ["register", "run", "Progress"]

_EXAMPLES = """examples:
  salmap motion walk.mp4                       overlay video walk_motion.mp4
  salmap motion walk.mp4 -o out.mp4 --map-video map.mp4 --npy maps.npy
  salmap motion walk.mp4 --contact-sheet sheet.png --no-video
  salmap motion clip.gif -o clip_motion.gif    animated GIF in and out
  salmap motion film.mkv --start 1000 --end 2000 --every 2 --json
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "motion",
        help="motion saliency of a video (optical flow, camera motion removed)",
        description=(
            "Motion saliency of a video: dense optical flow, the camera's own motion fitted "
            "with RANSAC and removed, the residual speed smoothed in space and time. "
            "Writes an overlay video; frames are processed one at a time, so memory does "
            "not grow with the video's length."
        ),
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("video", metavar="VIDEO", help="video file (MP4, AVI, MKV, MOV...) or GIF")

    frames = parser.add_argument_group("frames")
    frames.add_argument("--start", type=int, default=0, metavar="N", help="first frame (0-based)")
    frames.add_argument("--end", type=int, metavar="N", help="stop before this frame")
    frames.add_argument("--every", type=int, default=1, metavar="N", help="use one frame in N")
    frames.add_argument(
        "--max-width",
        type=int,
        default=320,
        metavar="PX",
        help="compute the flow on frames at most PX wide (default 320; outputs keep "
        "the video's size)",
    )

    method = parser.add_argument_group("method")
    method.add_argument("--flow", choices=("dis", "farneback"), default="dis", help="optical flow")
    method.add_argument(
        "--preset",
        choices=("ultrafast", "fast", "medium"),
        default="fast",
        help="DIS speed/quality preset (default fast)",
    )
    method.add_argument(
        "--camera",
        choices=("homography", "affine", "translation", "none"),
        default="homography",
        help="camera motion model removed from the flow (none: still camera)",
    )
    method.add_argument(
        "--spatial-sigma",
        type=float,
        default=0.01,
        metavar="F",
        help="Gaussian smoothing, as a fraction of the frame width (default 0.01)",
    )
    method.add_argument(
        "--temporal",
        type=float,
        default=0.3,
        metavar="F",
        help="weight of the past in the running average over frames, 0 to <1 (default 0.3)",
    )
    method.add_argument(
        "--static",
        metavar="METHOD",
        help="fuse with a static saliency method, e.g. spectral-residual (the Itti-Koch "
        "motion channel idea; see salmap static --help); maps become unitless, in [0, 1]",
    )
    method.add_argument(
        "--static-weight",
        type=float,
        default=0.3,
        metavar="F",
        help="share of the static map in the fusion (default 0.3)",
    )

    output = parser.add_argument_group("output")
    output.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="overlay video (.mp4, .avi, .mkv, .mov, .gif); default: VIDEO_motion.mp4",
    )
    output.add_argument("--no-video", action="store_true", help="do not write the overlay video")
    output.add_argument("--map-video", metavar="FILE", help="also write the coloured map alone")
    output.add_argument(
        "--npy",
        metavar="FILE",
        help="also write the maps as an N×H×W float32 .npy stack (pixels per frame; "
        "unitless with --static)",
    )
    output.add_argument(
        "--contact-sheet",
        metavar="FILE",
        help="also write a PNG: every Nth frame with its flow and saliency",
    )
    output.add_argument(
        "--sheet-rows", type=int, default=6, metavar="N", help="rows of the contact sheet"
    )
    output.add_argument("--cmap", default="inferno", help="matplotlib colormap (default inferno)")
    output.add_argument(
        "--alpha", type=float, default=0.6, metavar="F", help="overlay opacity (default 0.6)"
    )
    output.add_argument(
        "--saturation",
        type=float,
        metavar="PX",
        help="residual speed (pixels/frame) drawn at full colour; default: adapts to "
        "the video (at least 1)",
    )
    output.add_argument(
        "--json", action="store_true", help="print a machine-readable summary on stdout"
    )
    progress = output.add_mutually_exclusive_group()
    progress.add_argument(
        "--progress",
        dest="progress",
        action="store_const",
        const=True,
        help="show the progress line even when stderr is not a terminal",
    )
    progress.add_argument(
        "--no-progress", dest="progress", action="store_const", const=False, help="never show it"
    )
    parser.set_defaults(handler=run, progress=None)


class Progress:
    """One self-overwriting stderr line: done/total, percent, frames/s, ETA.

    Redrawn at most five times a second; silent unless ``enabled``. ``total`` may be
    ``None`` (unknown length): then no percentage or ETA is shown.
    """

    def __init__(self, total: int | None, enabled: bool, label: str = "motion", stream=None):
        self.total = total
        self.enabled = enabled
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._width = 0

    def update(self, count: int = 1) -> None:
        self.done += count
        now = time.perf_counter()
        if self.enabled and (now - self._last_draw >= 0.2 or self.done == self.total):
            self._last_draw = now
            self._draw(now)

    def rate(self) -> float:
        elapsed = time.perf_counter() - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def _draw(self, now: float) -> None:
        rate = self.rate()
        if self.total:
            fraction = min(1.0, self.done / self.total)
            bar = "#" * int(20 * fraction) + "-" * (20 - int(20 * fraction))
            left = (self.total - self.done) / rate if rate > 0 else 0.0
            text = (
                f"{self.label} [{bar}] {self.done}/{self.total} frames {100 * fraction:3.0f}% "
                f"{rate:5.1f} frames/s ETA {_clock(left)}"
            )
        else:
            text = f"{self.label} {self.done} frames {rate:5.1f} frames/s"
        padding = " " * max(0, self._width - len(text))
        self._width = len(text)
        self.stream.write("\r" + text + padding)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.done:
            self._draw(time.perf_counter())
            self.stream.write("\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(round(max(0.0, seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def _expected_frames(count: int | None, start: int, end: int | None, every: int) -> int | None:
    if count is None:
        return None
    stop = count if end is None else min(end, count)
    return max(0, len(range(start, stop, every)))


def run(args) -> int:
    from salmap.io.video import (
        WRITABLE_VIDEO_EXTENSIONS,
        NpyStackWriter,
        VideoWriter,
        read_video_info,
    )
    from salmap.motion import motion_saliency
    from salmap.viz.video import ContactSheet, RunningScale, colorize_frame, overlay_frame

    source = Path(args.video)
    video_path = (
        None if args.no_video else Path(args.output or default_output(source, "_motion.mp4"))
    )
    if args.no_video and args.output:
        raise UsageError("--no-video and -o contradict each other; drop one")
    outputs = {
        "video": video_path,
        "map_video": Path(args.map_video) if args.map_video else None,
        "npy": Path(args.npy) if args.npy else None,
        "contact_sheet": Path(args.contact_sheet) if args.contact_sheet else None,
    }
    chosen = [path.resolve() for path in outputs.values() if path is not None]
    if len(set(chosen)) < len(chosen):
        raise UsageError("two outputs have the same file name; give each its own")
    for key, path in outputs.items():
        if path is None:
            continue
        check_output_path(path)
        if path.exists() and source.exists() and path.resolve() == source.resolve():
            raise UsageError(f"{path} is the input video; choose another output name")
        if key in ("video", "map_video") and path.suffix.lower() not in WRITABLE_VIDEO_EXTENSIONS:
            raise UsageError(
                f"cannot write video {path}: use one of "
                f"{', '.join(sorted(WRITABLE_VIDEO_EXTENSIONS))}"
            )
    if outputs["contact_sheet"] is not None and outputs["contact_sheet"].suffix.lower() not in (
        ".png",
        ".jpg",
        ".jpeg",
        ".pdf",
        ".svg",
    ):
        raise UsageError(f"contact sheet {outputs['contact_sheet']}: use .png, .jpg, .pdf or .svg")
    if args.start < 0:
        raise UsageError(f"--start must be 0 or more, not {args.start}")
    if args.end is not None and args.end <= args.start:
        raise UsageError(f"--end must be greater than --start ({args.start}), not {args.end}")
    if args.every < 1:
        raise UsageError(f"--every must be at least 1, not {args.every}")
    if args.sheet_rows < 1:
        raise UsageError(f"--sheet-rows must be at least 1, not {args.sheet_rows}")
    if args.saturation is not None and not args.saturation > 0:
        raise UsageError(f"--saturation must be a positive speed, not {args.saturation}")
    if not 0 <= args.alpha <= 1:
        raise UsageError(f"--alpha must be in [0, 1], not {args.alpha}")

    info = read_video_info(source)  # exit 3 for still images, empty or broken files
    expected = _expected_frames(info.frame_count, args.start, args.end, args.every)
    if expected == 0:
        raise UsageError(
            f"--start {args.start} is past the end of {source} ({info.frame_count} frames)"
        )
    show = args.progress if args.progress is not None else (sys.stderr.isatty() and not args.json)
    progress = Progress(expected, bool(show))
    fps_out = info.fps / args.every
    sheet = None
    if outputs["contact_sheet"] is not None:
        every = max(1, -(-(expected or 60) // args.sheet_rows))
        sheet = ContactSheet(every=every, max_rows=args.sheet_rows)
    static_fused = args.static is not None
    # Residual speeds (pixels per frame) are drawn on a scale that adapts to the video
    # unless --saturation fixes it; fused maps are already unitless in [0, 1].
    scale = RunningScale(fixed=1.0 if static_fused else args.saturation)
    results = motion_saliency(
        source,
        start=args.start,
        end=args.end,
        every=args.every,
        flow=args.flow,
        preset=args.preset,
        camera=args.camera,
        max_width=args.max_width,
        spatial_sigma=args.spatial_sigma,
        temporal=args.temporal,
        static=args.static,
        static_weight=args.static_weight,
        saturation=args.saturation or 2.0,
    )
    stats = _Stats()
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        video = stack.enter_context(VideoWriter(video_path, fps_out)) if video_path else None
        map_video = (
            stack.enter_context(VideoWriter(outputs["map_video"], fps_out))
            if outputs["map_video"]
            else None
        )
        npy = stack.enter_context(NpyStackWriter(outputs["npy"])) if outputs["npy"] else None
        try:
            for result in results:
                values = scale(result.map)
                if video is not None:
                    video.write(overlay_frame(result.image, values, args.cmap, args.alpha))
                if map_video is not None:
                    map_video.write(colorize_frame(values, args.cmap))
                if npy is not None:
                    npy.write(result.map)
                if sheet is not None:
                    sheet.add(result)
                stats.add(result)
                progress.update()
        finally:
            progress.close()
        if sheet is not None:
            title = f"{source.name} · {stats.method} · camera {args.camera}"
            sheet.save(outputs["contact_sheet"], cmap=args.cmap, title=title)
    seconds = time.perf_counter() - started
    written = {key: str(path) for key, path in outputs.items() if path is not None}
    summary = {
        "input": info.to_dict(),
        "method": stats.method,
        "params": stats.params,
        "frames": stats.count,
        "first_frame": stats.first,
        "last_frame": stats.last,
        "fps_out": round(fps_out, 4),
        "seconds": round(seconds, 3),
        "frames_per_second": round(stats.count / seconds, 2) if seconds > 0 else None,
        "saliency": stats.saliency(),
        "camera": stats.camera(),
        "display_ceiling": round(scale.ceiling, 4),
        "outputs": written,
    }
    if args.json:
        print_json(summary)
    else:
        print(
            f"{stats.count} frames ({stats.first}–{stats.last}) of {source.name} "
            f"[{info.width}×{info.height}, {info.fps:g} fps] in {seconds:.1f} s "
            f"({summary['frames_per_second']} frames/s), {stats.method}"
        )
        for path in written.values():
            print(f"wrote {path}")
    return 0


class _Stats:
    """Running summary of a run (constant memory)."""

    def __init__(self) -> None:
        self.count = 0
        self.first = self.last = None
        self.method = ""
        self.params: dict = {}
        self.peak = 0.0
        self.mean_sum = 0.0
        self.shift_sum = np.zeros(2)
        self.shift_max = 0.0
        self.inliers_sum = 0.0

    def add(self, result) -> None:
        if self.count == 0:
            self.first = result.extras["frame"]
            self.method = result.method
            self.params = {k: v for k, v in result.params.items() if v is not None}
        self.last = result.extras["frame"]
        self.count += 1
        self.peak = max(self.peak, float(result.map.max()))
        self.mean_sum += float(result.map.mean())
        camera = result.extras["camera"]
        shift = np.array(camera.translation) * result.extras["scale"]
        self.shift_sum += shift
        self.shift_max = max(self.shift_max, float(np.hypot(*shift)))
        self.inliers_sum += camera.inliers

    def saliency(self) -> dict:
        unit = "unitless, in [0, 1]" if "static" in self.params else "pixels per frame"
        return {
            "unit": unit,
            "peak": round(self.peak, 4),
            "mean": round(self.mean_sum / max(1, self.count), 5),
        }

    def camera(self) -> dict:
        n = max(1, self.count)
        return {
            "mean_shift": [round(float(v), 3) for v in self.shift_sum / n],
            "max_shift": round(self.shift_max, 3),
            "mean_inliers": round(self.inliers_sum / n, 4),
        }
