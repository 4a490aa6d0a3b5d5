"""What a dataset is made of: folders, globs, manifests of paths, videos -> :class:`Input`.

Discovery is cheap (names only, no decoding): it walks folders, expands globs, reads
text or CSV manifests (with optional target columns) and lists a video's selected
frames, so the progress bar knows its total before the first image is decoded.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from salmap.errors import InputError, UsageError
from salmap.io.image import SAMPLE_IMAGES
from salmap.io.video import VIDEO_EXTENSIONS, is_video

__all__ = ["Input", "discover", "IMAGE_EXTENSIONS", "MANIFEST_EXTENSIONS"]

#: Files a folder walk or a glob picks up as images (others are ignored there).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")
#: Files named on the command line that list inputs instead of being one.
MANIFEST_EXTENSIONS = (".txt", ".csv", ".lst")

#: Characters that may not appear in a map's file name (separators, controls).
_UNSAFE = re.compile(r'[\x00-\x1f/\\:*?"<>|]+')


@dataclass(frozen=True)
class Input:
    """One image to explain: a file, a bundled photo, or one frame of a video.

    Attributes
    ----------
    source : str
        Absolute path of the file (or the bundled photo's name).
    frame : int or None
        Frame index for a video's frame.
    targets : tuple
        Targets asked for by a manifest (class indices or names); empty: the command's.
    """

    source: str
    frame: int | None = None
    targets: tuple = ()

    @property
    def identity(self) -> str:
        """What makes this input itself: its path, and its frame for a video."""
        return self.source if self.frame is None else f"{self.source}#frame={self.frame}"

    def stem(self) -> str:
        """A collision-free file-name stem: readable name, then a hash of the identity.

        Two ``img00.png`` in different folders get different stems; the name is cut to
        at most 80 UTF-8 bytes so that suffixes fit any file system's 255-byte limit.
        """
        name = Path(self.source).stem if self.source not in SAMPLE_IMAGES else self.source
        if self.frame is not None:
            name = f"{name}.f{self.frame:06d}"
        name = _UNSAFE.sub("_", name).lstrip(".") or "input"
        name = name.encode("utf-8")[:80].decode("utf-8", errors="ignore")
        digest = hashlib.sha1(self.identity.encode("utf-8", "surrogateescape")).hexdigest()
        return f"{name}-{digest[:10]}"


def discover(sources: Sequence[str | os.PathLike], every: int = 1) -> list[Input]:
    """Every input named by ``sources``, in order, each once (a manifest line naming a
    file again with its own targets is another input).

    Parameters
    ----------
    sources : sequence of str or path
        Image files, folders (walked recursively for :data:`IMAGE_EXTENSIONS` and
        videos), glob patterns (``**`` recurses), manifests (``.txt``/``.lst``: one path
        per line; ``.csv``: a ``path`` column, or the first column, and optional
        ``target*`` columns), videos, or bundled photo names. Relative paths in a
        manifest are relative to the manifest's folder.
    every : int
        Take one video frame in ``every``.

    Raises
    ------
    InputError
        A named file that does not exist or a glob that matches nothing.
    """
    if int(every) != every or every < 1:
        raise UsageError(f"--every must be a whole number >= 1, not {every}")
    seen: set[tuple] = set()
    found: list[Input] = []
    for item in _expand(sources, every):
        if (item.identity, item.targets) not in seen:
            seen.add((item.identity, item.targets))
            found.append(item)
    return found


def _expand(sources, every) -> Iterator[Input]:
    for source in sources:
        text = os.fspath(source)
        path = Path(text)
        if path.is_dir():
            yield from _files(sorted(_walk(path)), every)
        elif path.is_file() and path.suffix.lower() in MANIFEST_EXTENSIONS:
            yield from _manifest(path, every)
        elif path.exists():
            yield from _named(path, (), every)
        elif text in SAMPLE_IMAGES:
            yield Input(text)
        elif glob.has_magic(text):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise InputError(f"{text}: no file matches this pattern")
            yield from _files([Path(m) for m in matches if Path(m).is_file()], every)
        else:
            raise InputError(f"{text}: no such file or folder")


def _walk(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith("."):
                yield Path(root) / name


def _files(paths: Iterable[Path], every: int) -> Iterator[Input]:
    """Images and videos among ``paths``, by extension (no file is opened)."""
    for path in paths:
        suffix = path.suffix.lower()
        if suffix in VIDEO_EXTENSIONS:
            yield from _frames(path, (), every)
        elif suffix in IMAGE_EXTENSIONS:
            yield Input(str(path.absolute()))


def _named(path: Path, targets: tuple, every: int) -> Iterator[Input]:
    """A file named explicitly: a video's frames, or an image (an error row if not)."""
    if is_video(path):
        yield from _frames(path, targets, every)
    else:
        yield Input(str(path.absolute()), None, targets)


def _frames(path: Path, targets: tuple, every: int) -> Iterator[Input]:
    from salmap.io.video import read_video_info

    try:
        count = read_video_info(path).frame_count
    except InputError:
        yield Input(str(path.absolute()), None, targets)  # becomes an error row
        return
    for index in range(0, count or 0, every):
        yield Input(str(path.absolute()), index, targets)


def _manifest(path: Path, every: int) -> Iterator[Input]:
    """Paths (and targets) listed in a text or CSV file."""
    folder = path.parent
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read this manifest ({error})") from None
    if path.suffix.lower() == ".csv":
        rows = _csv_rows(path, text)
    else:
        rows = [(line.strip(), ()) for line in text.splitlines()]
    for name, targets in rows:
        if not name or name.startswith("#"):
            continue
        entry = Path(name) if Path(name).is_absolute() else folder / name
        if entry.exists() and is_video(entry):
            yield from _frames(entry, targets, every)
        else:
            yield Input(str(entry.absolute()), None, targets)


def _csv_rows(path: Path, text: str) -> list[tuple[str, tuple]]:
    reader = csv.reader(text.splitlines())
    header = [cell.strip().lower() for cell in next(reader, [])]
    if not header:
        raise InputError(f"{path}: the manifest is empty")
    names = [h for h in ("path", "source", "file", "image", "filename") if h in header]
    column = header.index(names[0]) if names else 0
    target_columns = [i for i, h in enumerate(header) if h.startswith("target")]
    rows = []
    for cells in reader:
        if len(cells) <= column:
            continue
        targets = tuple(
            _target(cells[i]) for i in target_columns if i < len(cells) and cells[i].strip()
        )
        rows.append((cells[column].strip(), targets))
    return rows


def _target(text: str) -> int | str:
    text = text.strip()
    return int(text) if text.isdigit() else text
