"""Write docs/cli.md, the command-line reference, from dartsnas's own parser, so that it cannot drift from it.

    python tools/cli_reference.py            # rewrite docs/cli.md
    python tools/cli_reference.py --check    # exit 1 if docs/cli.md is not what the parser says (a test runs it)
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

TARGET = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
WIDTH = "100"  # argparse wraps help to the terminal's width; a fixed one makes the page the same everywhere


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps subcommands only here
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _help(parser: argparse.ArgumentParser) -> str:
    """The help as a terminal of WIDTH columns without colour would show it (the environment is restored)."""
    saved = {k: os.environ.get(k) for k in ("COLUMNS", "NO_COLOR")}
    os.environ.update(COLUMNS=WIDTH, NO_COLOR="1")
    try:
        return parser.format_help().rstrip()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def render() -> str:
    from dartsnas.cli import build_parser

    parser = build_parser()
    commands = _subcommands(parser)
    parts = ["# Command-line reference", "",
             "Every command and option, as `dartsnas COMMAND --help` prints them (this page is generated from the",
             "parser by `tools/cli_reference.py`; `make docs` rewrites it and a test fails when it is stale).",
             "Every option of `search` and `train` is also a key of a YAML config file (`--config FILE`).", "",
             "```text", _help(parser), "```"]
    for name, sub in commands.items():
        parts += ["", f"## dartsnas {name}", "", "```text", _help(sub), "```"]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="compare instead of writing")
    args = p.parse_args(argv)
    text = render()
    if args.check:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET} is stale: run python tools/cli_reference.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
