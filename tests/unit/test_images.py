"""The platform's own images: named in one place, and each Dockerfile's layout imports and runs.

There is no Docker engine here, so the Dockerfiles are checked the way a build would use them: only
what their COPY lines copy is laid out under a fresh /app, and the entrypoint runs from there with the
project's dependencies but without the repository on the path.
"""

from __future__ import annotations

import shlex
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infra.cli import app
from infra.config.platform import PLATFORM_IMAGES
from tests.builders import STACKS, stack_config

ROOT = Path(__file__).resolve().parents[2]


def dockerfile_layout(dockerfile: Path, app_dir: Path) -> list[str]:
    """Copy what the Dockerfile's COPY lines copy into app_dir; return its ENTRYPOINT + CMD."""
    command: list[str] = []
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "COPY" and not words[1].startswith("--"):
            source, target = ROOT / words[1], words[2]
            if target.startswith("/tmp"):
                continue  # requirements files: installed by pip in the image, present in .venv here
            destination = (app_dir / target.removeprefix("/app/")).resolve()
            if source.is_dir():
                shutil.copytree(source, destination, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(source, destination)
        elif words[0] in ("ENTRYPOINT", "CMD"):
            command += __import__("json").loads(line.split(None, 1)[1])
    return command


def isolated_python(app_dir: Path) -> list[str]:
    """A Python that sees /app and the installed dependencies, not the repository (no .pth processing)."""
    site_packages = sysconfig.get_paths()["purelib"]
    bootstrap = f"import sys; sys.path[:] = [{str(app_dir)!r}] + sys.path + [{site_packages!r}]"
    run = "; import runpy; runpy.run_module(sys.argv.pop(1), run_name='__main__', alter_sys=True)"
    return [sys.executable, "-S", "-c", bootstrap + run]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("stack", STACKS)
def test_manifests_use_the_images_make_images_builds(stack, run_program):
    result = CliRunner().invoke(app, ["images", "--stack", stack])
    assert result.exit_code == 0, result.output
    built = {line.split()[2] for line in result.output.splitlines()}
    assert {line.split()[1] for line in result.output.splitlines()} == set(PLATFORM_IMAGES.values())
    capture = run_program(stack_config(stack), stack=stack)
    used = {
        container["image"]
        for r in capture.kubernetes()
        if r.inputs["kind"] in ("Deployment", "StatefulSet")
        for container in r.inputs["spec"]["template"]["spec"]["containers"]
        if "/gpu-platform/" in container["image"]
    }
    assert used and used <= built


def test_registry_and_tag_name_both_platform_images(run_program):
    config = stack_config("kind")
    config["gpu-platform:images"] = {"registry": "registry.example.com/team", "tag": "1.2.3"}
    capture = run_program(config, stack="kind")
    images = {
        c["image"] for r in capture.objects("Deployment") for c in r.inputs["spec"]["template"]["spec"]["containers"]
    }
    assert "registry.example.com/team/gateway:1.2.3" in images
    assert "registry.example.com/team/mock-worker:1.2.3" in images


def test_mock_worker_image_layout_runs(tmp_path):
    app_dir = tmp_path / "app"
    command = dockerfile_layout(ROOT / PLATFORM_IMAGES["mock-worker"], app_dir)
    assert command[:3] == ["python", "-m", "services.mock_worker"], command
    port = free_port()
    args = [a for a in command[3:] if a not in ("--port", "8000", "--host", "0.0.0.0")]
    process = subprocess.Popen(
        [*isolated_python(app_dir), "services.mock_worker", *args, "--host", "127.0.0.1", "--port", str(port)],
        cwd=app_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                    assert response.status == 200
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = process.stdout.read().decode(errors="replace") if process.poll() is not None else ""
                    pytest.fail(f"the mock worker did not start from the image layout: {output}")
                time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_gateway_image_layout_imports(tmp_path):
    app_dir = tmp_path / "app"
    command = dockerfile_layout(ROOT / PLATFORM_IMAGES["gateway"], app_dir)
    assert command == ["python", "-m", "services.gateway"], command
    check = (
        "import services.gateway.__main__ as m, services.gateway.app as a; "
        f"assert m.__file__.startswith({str(app_dir)!r}) and a.__file__.startswith({str(app_dir)!r}), m.__file__"
    )
    site_packages = sysconfig.get_paths()["purelib"]
    bootstrap = f"import sys; sys.path[:] = [{str(app_dir)!r}] + sys.path + [{site_packages!r}]; "
    result = subprocess.run(
        [sys.executable, "-S", "-c", bootstrap + check], cwd=app_dir, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, shlex.join(command) + "\n" + result.stderr
