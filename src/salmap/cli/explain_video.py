"""``salmap explain VIDEO``: model saliency for every frame of a video, streamed."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from salmap.cli.common import check_output_path, default_output, print_json
from salmap.errors import UsageError
from salmap.progress import progress_bar, show_progress

__all__ = ["add_video_options", "wants_video", "run_video"]


def add_video_options(parser) -> None:
    group = parser.add_argument_group("video (when IMAGE is a video file)")
    group.add_argument(
        "--video",
        action="store_true",
        help="read an animated GIF/PNG/WebP as a video (files like .mp4 .avi .mkv .mov are)",
    )
    group.add_argument("--start", type=int, default=0, metavar="N", help="first frame (0-based)")
    group.add_argument("--end", type=int, metavar="N", help="stop before this frame")
    group.add_argument("--every", type=int, default=1, metavar="N", help="use one frame in N")
    group.add_argument(
        "--max-width", type=int, metavar="PX", help="downscale frames to at most PX wide first"
    )
    group.add_argument(
        "--fix-target",
        action="store_true",
        help="hold the first frame's top-1 class for the whole video (default: each "
        "frame's own top-1, unless --target)",
    )
    group.add_argument(
        "--smooth",
        type=float,
        default=0.0,
        metavar="W",
        help="temporal smoothing weight in [0, 1): map = W*previous + (1-W)*current",
    )
    group.add_argument(
        "--frames-per-batch", type=int, default=8, metavar="N", help="frames sent together (8)"
    )
    group.add_argument("--alpha", type=float, default=0.6, help="overlay opacity (0.6)")


def wants_video(args, images: list[str]) -> bool:
    """Whether the inputs name a video to explain frame by frame."""
    from salmap.io.video import VIDEO_EXTENSIONS

    videos = [i for i in images if args.video or Path(i).suffix.lower() in VIDEO_EXTENSIONS]
    if videos and len(images) > 1:
        raise UsageError("explain one video at a time (or several images, but not both)")
    return bool(videos)


def _check(args, source: str) -> Path:
    """Refuse what a video run cannot do; return the overlay video's path."""
    from salmap.io.video import WRITABLE_VIDEO_EXTENSIONS

    if args.heatmap or args.methods or (args.target and len(args.target) > 1):
        raise UsageError("for a video, use -o (overlay video), --npy and one --target")
    if args.start < 0 or args.every < 1 or (args.end is not None and args.end <= args.start):
        raise UsageError("frames: --start >= 0, --every >= 1 and --end > --start")
    if args.frames_per_batch < 1:
        raise UsageError("--frames-per-batch must be at least 1")
    output = Path(args.output) if args.output else default_output(source, "_saliency.mp4")
    if output.suffix.lower() not in WRITABLE_VIDEO_EXTENSIONS:
        raise UsageError(
            f"cannot write video {output}: use one of "
            f"{', '.join(sorted(WRITABLE_VIDEO_EXTENSIONS))}"
        )
    check_output_path(output)
    check_output_path(args.npy)
    return output


def _results(args, source: str, model, params: dict):
    import salmap

    target = args.target[0] if args.target else None
    if isinstance(target, str) and target.strip().isdigit():
        target = int(target)
    return salmap.explain_video(
        source,
        model,
        method=args.method,
        target=target,
        fix_target=args.fix_target,
        smoothing=args.smooth,
        start=args.start,
        end=args.end,
        every=args.every,
        max_width=args.max_width,
        frames_per_batch=args.frames_per_batch,
        score=args.score,
        reduction=args.reduction,
        top_k=args.top_k,
        **params,
    )


def _write(args, results, output: Path, fps: float, progress) -> dict[int, int]:
    """Stream the overlays (and the maps with --npy); count frames per target class."""
    from salmap.io.video import NpyStackWriter, VideoWriter
    from salmap.viz.video import RunningScale, overlay_frame

    scale = RunningScale(floor=1e-12, percentile=99.0)
    classes: dict[int, int] = {}
    with contextlib.ExitStack() as stack:
        video = stack.enter_context(VideoWriter(output, fps))
        npy = stack.enter_context(NpyStackWriter(args.npy)) if args.npy else None
        for result in results:
            video.write(overlay_frame(result.image, scale(result.map), args.cmap, args.alpha))
            if npy is not None:
                npy.write(result.map)
            classes[result.target] = classes.get(result.target, 0) + 1
            progress.advance()
    return classes


def run_video(args, source: str, model_options: dict, params: dict) -> int:
    import salmap
    from salmap.cli.motion import expected_frames
    from salmap.io.video import read_video_info

    output = _check(args, source)
    info = read_video_info(source)  # exit 3 for still images, empty or broken files
    model = salmap.load_model(**model_options)
    results = _results(args, source, model, params)
    expected = expected_frames(info.frame_count, args.start, args.end, args.every)
    enabled = show_progress(getattr(args, "progress", None), args.json)
    started = time.perf_counter()
    with progress_bar(expected, "explain", enabled=enabled, unit="frames") as progress:
        classes = _write(args, results, output, info.fps / args.every, progress)
    seconds = time.perf_counter() - started
    frames = sum(classes.values())
    summary = {
        "video": str(source),
        "output": str(output),
        "npy": str(args.npy) if args.npy else None,
        "model": model.name,
        "method": args.method,
        "frames": frames,
        "seconds": round(seconds, 3),
        "frames_per_second": round(frames / seconds, 3) if seconds > 0 else None,
        "targets": [
            {"index": k, "label": model.class_names[k] if model.class_names else None, "frames": v}
            for k, v in sorted(classes.items(), key=lambda item: -item[1])
        ],
    }
    if args.json:
        print_json(summary)
    else:
        print(f"{source}: {frames} frames explained with {args.method} in {seconds:.1f} s")
        for row in summary["targets"][:5]:
            print(f"  class {row['index']:>5} {row['label'] or '':<28} {row['frames']} frames")
        print(f"wrote {output}")
        if args.npy:
            print(f"wrote {args.npy}")
    return 0
