"""``salmap motion VIDEO``: what moves in a video, with the camera's motion removed."""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import numpy as np

from salmap.cli.common import check_output_path, default_output, print_json
from salmap.errors import UsageError
from salmap.progress import progress_bar, show_progress

__all__ = ["register", "run", "add_progress_options", "expected_frames"]

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
            "Motion saliency of a video: dense optical flow checked forwards and backwards, "
            "the camera's own motion (pan, zoom, rotation, shake) fitted with RANSAC and "
            "removed, the residual speed smoothed in space and time; shot changes are "
            "detected and restart the smoothing. Writes an overlay video; frames are "
            "processed one at a time, so memory does not grow with the video's length."
        ),
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("video", metavar="VIDEO", help="video file (MP4, AVI, MKV, MOV...) or GIF")
    _frame_options(parser.add_argument_group("frames"))
    _method_options(parser.add_argument_group("method"))
    _output_options(parser.add_argument_group("output"))
    add_progress_options(parser)
    parser.set_defaults(handler=run)


def _frame_options(group) -> None:
    group.add_argument("--start", type=int, default=0, metavar="N", help="first frame (0-based)")
    group.add_argument("--end", type=int, metavar="N", help="stop before this frame")
    group.add_argument("--every", type=int, default=1, metavar="N", help="use one frame in N")
    group.add_argument(
        "--max-width",
        type=int,
        default=320,
        metavar="PX",
        help="compute the flow on frames at most PX wide (default 320; outputs keep "
        "the video's size)",
    )


def _method_options(group) -> None:
    group.add_argument("--flow", choices=("dis", "farneback"), default="dis", help="optical flow")
    group.add_argument(
        "--preset",
        choices=("ultrafast", "fast", "medium"),
        default="fast",
        help="DIS speed/quality preset (default fast)",
    )
    group.add_argument(
        "--camera",
        choices=("homography", "affine", "translation", "none"),
        default="homography",
        help="camera motion model removed from the flow (none: still camera)",
    )
    group.add_argument(
        "--spatial-sigma",
        type=float,
        default=0.01,
        metavar="F",
        help="Gaussian smoothing, as a fraction of the frame width (default 0.01)",
    )
    group.add_argument(
        "--temporal",
        type=float,
        default=0.3,
        metavar="F",
        help="weight of the past in the running average over frames, 0 to <1 (default 0.3)",
    )
    group.add_argument(
        "--static",
        metavar="METHOD",
        help="fuse with a static saliency method, e.g. spectral-residual (the Itti-Koch "
        "motion channel idea; see salmap static --help); maps become unitless, in [0, 1]",
    )
    group.add_argument(
        "--static-weight",
        type=float,
        default=0.3,
        metavar="F",
        help="share of the static map in the fusion (default 0.3)",
    )


def _output_options(group) -> None:
    group.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="overlay video (.mp4, .avi, .mkv, .mov, .gif); default: VIDEO_motion.mp4",
    )
    group.add_argument("--no-video", action="store_true", help="do not write the overlay video")
    group.add_argument("--map-video", metavar="FILE", help="also write the coloured map alone")
    group.add_argument(
        "--npy",
        metavar="FILE",
        help="also write the maps as an N×H×W float32 .npy stack (pixels per frame; "
        "unitless with --static)",
    )
    group.add_argument(
        "--contact-sheet",
        metavar="FILE",
        help="also write a PNG: every Nth frame with its flow and saliency (shot changes marked)",
    )
    group.add_argument(
        "--sheet-rows", type=int, default=6, metavar="N", help="rows of the contact sheet"
    )
    group.add_argument("--cmap", default="inferno", help="matplotlib colormap (default inferno)")
    group.add_argument(
        "--alpha", type=float, default=0.6, metavar="F", help="overlay opacity (default 0.6)"
    )
    group.add_argument(
        "--saturation",
        type=float,
        metavar="PX",
        help="residual speed (pixels/frame) drawn at full colour; default: adapts to "
        "the video (at least 1)",
    )
    group.add_argument(
        "--json", action="store_true", help="print a machine-readable summary on stdout"
    )


def add_progress_options(parser) -> None:
    """``--progress/--no-progress`` (default: on a terminal and not with ``--json``)."""
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument(
        "--progress",
        dest="progress",
        action="store_const",
        const=True,
        help="show the progress bar even when stderr is not a terminal",
    )
    progress.add_argument(
        "--no-progress", dest="progress", action="store_const", const=False, help="never show it"
    )
    parser.set_defaults(progress=None)


def expected_frames(count: int | None, start: int, end: int | None, every: int) -> int | None:
    """How many frames ``[start, end)`` with stride ``every`` selects (None: unknown)."""
    if count is None:
        return None
    stop = count if end is None else min(end, count)
    return max(0, len(range(start, stop, every)))


def _outputs(args, source: Path) -> dict[str, Path | None]:
    """The output paths asked for, checked before any work."""
    from salmap.io.video import WRITABLE_VIDEO_EXTENSIONS

    if args.no_video and args.output:
        raise UsageError("--no-video and -o contradict each other; drop one")
    video = None if args.no_video else Path(args.output or default_output(source, "_motion.mp4"))
    outputs = {"video": video, "map_video": args.map_video, "npy": args.npy}
    outputs["contact_sheet"] = args.contact_sheet
    outputs = {key: None if path is None else Path(path) for key, path in outputs.items()}
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
            extensions = ", ".join(sorted(WRITABLE_VIDEO_EXTENSIONS))
            raise UsageError(f"cannot write video {path}: use one of {extensions}")
    sheet = outputs["contact_sheet"]
    if sheet is not None and sheet.suffix.lower() not in (".png", ".jpg", ".jpeg", ".pdf", ".svg"):
        raise UsageError(f"contact sheet {sheet}: use .png, .jpg, .pdf or .svg")
    return outputs


def _check_numbers(args) -> None:
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


def _results(args, source: Path):
    from salmap.motion import motion_saliency

    return motion_saliency(
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


def run(args) -> int:
    from salmap.io.video import read_video_info
    from salmap.viz.video import ContactSheet, RunningScale

    source = Path(args.video)
    outputs = _outputs(args, source)
    _check_numbers(args)
    info = read_video_info(source)  # exit 3 for still images, empty or broken files
    expected = expected_frames(info.frame_count, args.start, args.end, args.every)
    if expected == 0:
        raise UsageError(
            f"--start {args.start} is past the end of {source} ({info.frame_count} frames)"
        )
    sheet = None
    if outputs["contact_sheet"] is not None:
        sheet = ContactSheet(
            every=max(1, -(-(expected or 60) // args.sheet_rows)), max_rows=args.sheet_rows
        )
    # Residual speeds (pixels per frame) are drawn on a scale that adapts to the video
    # unless --saturation fixes it; fused maps are already unitless in [0, 1].
    scale = RunningScale(fixed=1.0 if args.static is not None else args.saturation)
    stats = _Stats()
    started = time.perf_counter()
    enabled = show_progress(args.progress, args.json)
    with progress_bar(expected, "motion", enabled=enabled, unit="frames") as progress:
        _write(
            args,
            outputs,
            info.fps / args.every,
            _results(args, source),
            scale,
            sheet,
            stats,
            progress,
        )
    if sheet is not None:
        title = f"{source.name} · {stats.method} · camera {args.camera}"
        sheet.save(outputs["contact_sheet"], cmap=args.cmap, title=title)
    seconds = time.perf_counter() - started
    written = {key: str(path) for key, path in outputs.items() if path is not None}
    summary = _summary(info, stats, args, seconds, scale, written)
    if args.json:
        print_json(summary)
    else:
        _print_text(summary, source, info)
    return 0


def _write(args, outputs, fps_out, results, scale, sheet, stats, progress) -> None:
    """Stream the results into every output asked for (each written atomically)."""
    from salmap.io.video import NpyStackWriter, VideoWriter
    from salmap.viz.video import colorize_frame, overlay_frame

    with contextlib.ExitStack() as stack:

        def open_writer(path, writer, *options):
            return None if path is None else stack.enter_context(writer(path, *options))

        video = open_writer(outputs["video"], VideoWriter, fps_out)
        map_video = open_writer(outputs["map_video"], VideoWriter, fps_out)
        npy = open_writer(outputs["npy"], NpyStackWriter)
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
            progress.advance()


def _summary(info, stats, args, seconds: float, scale, written: dict) -> dict:
    return {
        "input": info.to_dict(),
        "method": stats.method,
        "params": stats.params,
        "frames": stats.count,
        "first_frame": stats.first,
        "last_frame": stats.last,
        "fps_out": round(info.fps / args.every, 4),
        "seconds": round(seconds, 3),
        "frames_per_second": round(stats.count / seconds, 2) if seconds > 0 else None,
        "saliency": stats.saliency(),
        "camera": stats.camera(),
        "shots": len(stats.cuts) + 1,
        "cuts": stats.cuts,
        "display_ceiling": round(scale.ceiling, 4),
        "outputs": written,
    }


def _print_text(summary: dict, source: Path, info) -> None:
    print(
        f"{summary['frames']} frames ({summary['first_frame']}–{summary['last_frame']}) of "
        f"{source.name} [{info.width}×{info.height}, {info.fps:g} fps] in "
        f"{summary['seconds']:.1f} s ({summary['frames_per_second']} frames/s), "
        f"{summary['method']}"
    )
    if summary["cuts"]:
        print(f"{summary['shots']} shots: cuts at frames {', '.join(map(str, summary['cuts']))}")
    for path in summary["outputs"].values():
        print(f"wrote {path}")


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
        self.cuts: list[int] = []

    def add(self, result) -> None:
        if self.count == 0:
            self.first = result.extras["frame"]
            self.method = result.method
            self.params = {k: v for k, v in result.params.items() if v is not None}
        self.last = result.extras["frame"]
        if result.extras.get("cut"):
            self.cuts.append(int(result.extras["frame"]))
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
