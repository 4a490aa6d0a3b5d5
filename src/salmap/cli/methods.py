"""``salmap methods``: the model saliency methods, what each does, and its parameters."""

from __future__ import annotations

from salmap.cli.common import print_json

_HIDDEN = ("score", "batch_size")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "methods",
        help="list the model saliency methods with their parameters and defaults",
        description="List the model saliency methods of `salmap explain --method NAME`, "
        "each with a one-line description and its parameters (set them with "
        "--param KEY=VALUE). Every method also takes --score and --batch-size.",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run)


def rows() -> list[dict]:
    from salmap.methods import ALIASES, METHODS

    aliases: dict[str, list[str]] = {}
    for alias, name in ALIASES.items():
        aliases.setdefault(name, []).append(alias)
    return [
        {
            "name": spec.name,
            "family": spec.family,
            "summary": spec.summary,
            "output": spec.output,
            "signed": spec.signed,
            "parameters": {k: v for k, v in spec.defaults.items() if k not in _HIDDEN},
            "aliases": aliases.get(spec.name, []),
        }
        for spec in METHODS.values()
    ]


def run(args) -> int:
    table = rows()
    if args.json:
        print_json(table)
        return 0
    family = None
    for row in table:
        if row["family"] != family:
            family = row["family"]
            print(f"{family}:")
        print(f"  {row['name']:<22} {row['summary']}")
        if row["parameters"]:
            text = ", ".join(f"{k}={v}" for k, v in row["parameters"].items())
            print(f"  {'':<22} {text}")
    print(
        "\nnoise wrappers (smoothgrad, squaregrad, vargrad) also take the base method's "
        "parameters,\ne.g. --method smoothgrad --param base=integrated-gradients --param steps=16"
    )
    return 0
