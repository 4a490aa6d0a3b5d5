"""Every README example runs: the Python blocks execute, the command lines parse."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text("utf-8")


def _blocks(language: str) -> list[str]:
    """The fenced code blocks of the README in one language ("" for plain blocks)."""
    blocks, current, open_language, indent = [], [], None, 0
    for line in README.splitlines():
        fence = line.strip()
        if open_language is None and fence.startswith("```"):
            open_language, current = fence[3:].strip(), []
            indent = len(line) - len(line.lstrip())
        elif open_language is not None and fence == "```":
            if open_language == language:
                blocks.append("\n".join(current) + "\n")
            open_language = None
        elif open_language is not None:
            current.append(line[indent:])
    return blocks


def _command_lines() -> list[list[str]]:
    commands = []
    for block in _blocks(""):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("salmap "):
                commands.append(shlex.split(line)[1:])
    return commands


def test_readme_has_the_two_setup_commands():
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text("utf-8")
    assert 'pip install -e ".[test]" && python -m pytest' in README
    assert 'pip install -e ".[test]" && python -m pytest' in ci
    assert "pip install . && salmap explain" in README


@pytest.mark.parametrize("argv", _command_lines(), ids=lambda argv: " ".join(argv)[:60])
def test_readme_command_lines_parse(argv):
    from salmap.cli import build_parser

    args = build_parser().parse_args(argv)
    assert callable(args.handler)


VTEST = Path(os.environ.get("SALMAP_VTEST", Path(__file__).parents[2] / "shared/data/vtest.avi"))


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    """The blocks continue one another, as a reader would type them. The video example
    runs where OpenCV's sample video is at hand (see shared/data/README.md)."""
    monkeypatch.chdir(tmp_path)
    if VTEST.is_file():
        (tmp_path / "vtest.avi").symlink_to(VTEST)
    namespace: dict = {}
    for index, block in enumerate(_blocks("python")):
        if "vtest.avi" in block and not VTEST.is_file():
            continue
        exec(compile(block, f"README.md python block {index}", "exec"), namespace)
    assert namespace["result"].target == 285
    assert (tmp_path / "figure.png").stat().st_size > 10_000
