"""Helpers of the stack-file tests: write a stack file, run a platformctl command on it."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner, Result

from infra.cli import app
from infra.stack_file import load_stack_file
from tests.builders import ROOT, stack_config

KIND_TEXT = (ROOT / "stacks" / "Pulumi.kind.yaml").read_text()


def kind() -> dict[str, Any]:
    return stack_config("kind")


def platformctl(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def refused(path: Path, *expected: str, command: str = "policy") -> str:
    """Run `command` on the stack file; assert exit 2, no traceback, and each `expected` in one error line."""
    args = ["policy", "check"] if command == "policy" else [command]
    result = platformctl(*args, "--stack", "custom", "--stack-file", str(path))
    output = result.output
    assert result.exit_code == 2, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith(f"error: {path}: ")]
    assert lines, output
    for text in expected:
        assert any(text in line for line in lines), (text, output)
    return output


def accepted(path: Path) -> None:
    """The same file's configuration parses (the CLI's own reader and parser, without running the program)."""
    load_stack_file(path)


class StackFiles:
    """Writes stack files into one folder: from a config mapping, or from text."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.count = 0

    def config(self, config: dict[str, Any]) -> Path:
        return self.text(yaml.safe_dump({"config": config}, sort_keys=False))

    def text(self, text: str | bytes) -> Path:
        self.count += 1
        path = self.folder / f"Pulumi.case{self.count}.yaml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return path

    def kind_with(self, change: Callable[[dict[str, Any]], Any]) -> Path:
        config = copy.deepcopy(kind())
        change(config)
        return self.config(config)
