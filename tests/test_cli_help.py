"""Help texts: plain text, examples at the end, and a fast ``shapeood --help``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from shapeood.cli import build_parser

HEAVY = ("torch", "numpy", "pandas", "torchvision", "timm", "sklearn", "PIL", "yaml")


def _commands():
    parser = build_parser()
    return parser._subparsers._group_actions[0].choices


def test_top_level_help_imports_nothing_heavy():
    code = (
        "import sys\n"
        "from shapeood.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ),
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "usage: shapeood" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_command_help_is_plain_and_ends_with_examples(name):
    text = _commands()[name].format_help()
    assert "``" not in text and "::" not in text and ":param" not in text, text
    blocks = text.rstrip().split("\n\n")
    last = blocks[-1].splitlines()
    assert last[0] == "examples:", f"{name}: help does not end with examples:\n{text}"
    commands = [line.strip() for line in last[1:] if not line.startswith("      ")]
    assert commands and all(
        c.startswith(("shapeood ", "torchrun ", "SHAPEOOD_")) for c in commands
    ), commands
