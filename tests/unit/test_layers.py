"""The layering, checked on every import statement (function-level ones included).

services.gateway.config <- infra.config <- components <- infra.program <- preview, CLI, demo;
the policy pack stands alone, so `pulumi preview --policy-pack policies` needs nothing of the program.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# package folder -> module prefixes it must never import
FORBIDDEN = {
    "services": ("infra", "components", "policies"),
    "policies": ("infra", "components", "services"),
    "infra/config": ("components", "infra.program", "infra.preview", "infra.cli", "infra.demo", "infra.chargeback"),
    "components": ("infra.program", "infra.preview", "infra.cli", "infra.demo", "infra.chargeback", "infra.usage"),
}


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def violations(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    problems = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for module in imported_modules(path):
            if any(module == prefix or module.startswith(prefix + ".") for prefix in forbidden):
                problems.append(f"{path.relative_to(ROOT)} imports {module}")
    return problems


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_no_import_reaches_up_a_layer(folder):
    assert violations(folder, FORBIDDEN[folder]) == []


def test_the_check_sees_a_violation(tmp_path, monkeypatch):
    bad = tmp_path / "services" / "x.py"
    bad.parent.mkdir()
    bad.write_text("def f():\n    from infra.program import main\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert violations("services", FORBIDDEN["services"]) == ["services/x.py imports infra.program"]


def test_plain_pytest_collects_the_service_tests():
    """`pytest` as an IDE runs it: tests/services must not shadow the real services package."""
    pytest_bin = Path(sys.executable).with_name("pytest")
    result = subprocess.run(
        [str(pytest_bin), "--collect-only", "-q", "tests/services/gateway/test_scheduler.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test_scheduler.py::" in result.stdout
