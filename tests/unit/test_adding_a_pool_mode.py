"""The README's "Adding a GPU pool mode", done: a mode is its PoolMode entry and its builder, nothing else.

The mode here ("static") labels the nodes the stack lists and installs nothing: GPUs a cluster
already advertises. Registered only for the test, it must be accepted by the stack file, validated
by its own rule, bound the declared GPU capacity by what it provides, and create what its builder
creates.
"""

from __future__ import annotations

import pulumi
import pytest

from components import gpu_node_pool
from infra.config.pool_modes import POOL_MODES, PoolMode
from infra.stack_file import ConfigError, parse_stack_config, project_values
from tests.builders import minimal_config


def _validate_static(pool) -> None:
    if pool.gpus_per_node is None:
        raise ValueError("gpuPool.gpusPerNode: say how many GPUs each static node advertises")


STATIC = PoolMode(
    "static",
    (),
    _validate_static,
    lambda pool: (pool.gpus_per_node or 0) * len(pool.nodes),
    labels_nodes=True,
)


def _build_static(self, args):
    self._label_nodes()
    return pulumi.Output.from_input(self._pool.gpus_per_node), pulumi.Output.from_input(len(self._pool.nodes))


@pytest.fixture
def static_mode(monkeypatch):
    monkeypatch.setitem(POOL_MODES, "static", STATIC)
    monkeypatch.setitem(gpu_node_pool.BUILDERS, "static", _build_static)


def _config(**pool):
    config = minimal_config()
    config["gpu-platform:gpuPool"] = {"mode": "static", "nodes": ["gpu-a", "gpu-b"], **pool}
    return config


def test_a_new_pool_mode_is_two_entries(static_mode, run_program):
    capture = run_program(_config(gpusPerNode=4))
    patched = {r.inputs["metadata"]["name"] for r in capture.of_type("kubernetes:core/v1:NodePatch")}
    assert patched == {"gpu-a", "gpu-b"}
    # The builder installs nothing: no device plugin, no fake operator.
    releases = set(capture.releases())
    assert not releases & {"nvidia-device-plugin", "fake-gpu-operator"}
    record = capture.find("ConfigMap", "platform-capacity", "platform-system").inputs["data"]
    assert record["gpu"] == "8"


def test_the_new_modes_gpus_bound_the_declared_capacity(static_mode):
    # 2 nodes x 2 GPUs, from the entry's `gpus`: the stack's 8 declared GPUs are refused.
    with pytest.raises(ConfigError, match="the static pool provides 4"):
        parse_stack_config(project_values(_config(gpusPerNode=2)), "Pulumi.custom.yaml")


def test_the_new_mode_validates_with_its_own_rule(static_mode):
    with pytest.raises(ConfigError, match="gpusPerNode"):
        parse_stack_config(project_values(_config()), "Pulumi.custom.yaml")


def test_without_its_entry_the_mode_is_unknown():
    with pytest.raises(ConfigError, match="unknown GPU pool mode 'static'"):
        parse_stack_config(project_values(_config(gpusPerNode=2)), "Pulumi.custom.yaml")
