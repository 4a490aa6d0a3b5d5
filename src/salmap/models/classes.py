"""Class names (ImageNet's 1000 ship with salmap, so they work offline) and targets."""

from __future__ import annotations

import difflib
import functools
from collections.abc import Sequence
from importlib import resources

from salmap.errors import UsageError

__all__ = ["imagenet_classes", "imagenet_synonyms", "resolve_target"]


@functools.cache
def _imagenet_table() -> tuple[tuple[str, tuple[str, ...]], ...]:
    text = resources.files("salmap.models").joinpath("data/imagenet_classes.tsv").read_text("utf-8")
    rows = []
    for line in text.splitlines():
        synset, lemmas = line.split("\t", 1)
        rows.append((synset, tuple(name.strip() for name in lemmas.split(","))))
    return tuple(rows)


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names in index order (the WordNet synset's first lemma:
    285 is ``Egyptian cat``, 967 ``espresso``)."""
    return [lemmas[0] for _, lemmas in _imagenet_table()]


def imagenet_synonyms() -> list[tuple[str, ...]]:
    """All lemmas of each ImageNet class (``tabby``, ``tabby cat`` for 281)."""
    return [lemmas for _, lemmas in _imagenet_table()]


def _key(name: str) -> str:
    return " ".join(name.replace("_", " ").lower().split())


def resolve_target(
    target: int | str,
    num_classes: int,
    class_names: Sequence[str] | None = None,
    synonyms: Sequence[Sequence[str]] | None = None,
) -> int:
    """Turn a class index or name into an index, strictly.

    Names match case-insensitively, with ``_`` as a space, against each class's name and
    synonyms; an ambiguous or unknown name, or an index out of range, is a UsageError
    that says what would work.
    """
    if isinstance(target, str) and target.strip().lstrip("-").isdigit():
        target = int(target)
    if isinstance(target, (int,)) and not isinstance(target, bool):
        if not 0 <= target < num_classes:
            raise UsageError(
                f"class index {target} is out of range: the model has {num_classes} classes "
                f"(0 to {num_classes - 1})"
            )
        return int(target)
    if not isinstance(target, str):
        raise UsageError(f"a target is a class index or a class name, not {target!r}")
    if class_names is None:
        raise UsageError(
            f"the model has no class names, so {target!r} cannot be looked up; give a class index"
        )
    wanted = _key(target)
    names = [[name] for name in class_names] if synonyms is None else synonyms
    exact = [i for i, name in enumerate(class_names) if _key(name) == wanted]
    if not exact:
        exact = [i for i, group in enumerate(names) if any(_key(n) == wanted for n in group)]
    if len(exact) == 1:
        return exact[0]
    if len(exact) > 1:
        choices = ", ".join(f"{i} ({class_names[i]})" for i in exact)
        raise UsageError(f"class name {target!r} is ambiguous: {choices}; give the index instead")
    close = difflib.get_close_matches(wanted, [_key(n) for n in class_names], n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise UsageError(f"unknown class name {target!r}{hint} (see `salmap models --classes`)")
