"""Shared fixtures: the Pulumi program under the SDK's mock runtime.

`run_under_mocks` gives every run a fresh event loop and `pulumi.runtime.reset_options()`,
so tests never see each other's resources, and a capturing mock that returns results for
pulumi-random resources (the SDK's default mock would leave `RandomPassword.result` None).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import program
from infra.preview.capture import Capture, run_under_mocks
from tests.builders import ROOT, STACKS, minimal_config, stack_config  # noqa: F401 - re-exported for fixtures


@pytest.fixture
def run_program() -> Callable[..., Capture]:
    """Run the real program (infra.program.main) with a raw stack config; returns the capture."""

    def run(config: dict[str, Any], stack: str = "test") -> Capture:
        return run_under_mocks(program.main, stack=stack, config=config)

    return run


@pytest.fixture
def write_stack(tmp_path: Path) -> Callable[[dict[str, Any]], Path]:
    def write(config: dict[str, Any], name: str = "Pulumi.custom.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump({"config": config}))
        return path

    return write
