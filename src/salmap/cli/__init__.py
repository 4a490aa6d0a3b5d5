"""The ``salmap`` command line.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``handler`` to a function
``run(args) -> int``. This module only dispatches and turns errors into one line on
stderr with the documented exit code:

0 success · 2 usage error · 3 bad input file · 4 model problem · 1 anything else.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from salmap.errors import SalmapError

__all__ = ["main", "build_parser"]

#: Sub-command modules, in the order ``--help`` lists them.
COMMANDS = (
    "explain",
    "batch",
    "methods",
    "models",
    "motion",
    "static",
    "score",
    "eval",
    "serve",
)

_EPILOG = """examples:
  salmap explain                       explain the bundled photo (chelsea the cat)
  salmap explain photo.jpg -o photo_saliency.png
  salmap explain photo.jpg --model resnet50 --weights resnet50.h5 --target "Egyptian cat"
  salmap explain photo.jpg --json      machine-readable result on stdout
  salmap batch photos/ -o out          every image of a folder, resumable
  salmap models                        which models exist and which work offline
  salmap serve                         the web page on http://127.0.0.1:8000/

exit codes: 0 ok, 2 usage error, 3 bad input file, 4 model problem, 1 other error
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="salmap",
        description="Saliency maps: which pixels matter to a model, to the eye, in a video.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    parser.add_argument("--version", action="version", version=f"salmap {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"salmap.cli.{name}").register(subparsers)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("salmap")
    except PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except SalmapError as error:
        if args.debug:
            raise
        print(f"salmap: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("salmap: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        if args.debug:
            raise
        print("salmap: error: out of memory; try a smaller --batch-size or image", file=sys.stderr)
        return 1
    except Exception as error:  # noqa: BLE001 - the last line of defence: one line, no traceback
        if args.debug:
            raise
        detail = str(error).splitlines()[0] if str(error) else ""
        print(
            f"salmap: internal error: {type(error).__name__}: {detail}"
            " (run with --debug for the traceback and please report it)",
            file=sys.stderr,
        )
        return 1
