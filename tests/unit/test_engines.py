"""The engine table is the one home of an engine: adding one is one entry, and the mock agrees with it."""

from __future__ import annotations

import pytest

from infra.config.engines import ENGINES, Engine
from services.mock_worker.metrics import ENGINE_METRIC_NAMES
from tests.builders import minimal_config


def _tgi(worker, port):
    return {"args": ["--model-id", worker.model, "--port", str(port)]}


TGI = Engine(
    name="tgi",
    image_setting="vllm",
    container=_tgi,
    resources={"cpu": "2", "cpu_limit": "4", "memory": "8Gi", "memory_limit": "16Gi"},
    queue_metric="tgi_queue_size",
    metrics=("tgi_queue_size",),
    needs_egress=True,
    ready_timeout="45m",
    tensor_parallel=True,
    env={"USER": "engine"},
    port=8081,
)


def test_a_new_engine_is_one_entry(monkeypatch, run_program):
    monkeypatch.setitem(ENGINES, "tgi", TGI)
    config = minimal_config(workers=[{"name": "w", "engine": "tgi", "model": "org/m"}])
    capture = run_program(config)
    [deployment] = [r.inputs for r in capture.objects("Deployment", "team-a")]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["--model-id", "org/m", "--port", "8081"]
    assert container["ports"][0]["containerPort"] == 8081
    assert container["resources"]["requests"]["memory"] == "8Gi"
    assert {"name": "USER", "value": "engine"} in container["env"]
    # The gateway may reach the new engine's port, and its route points there.
    egress = capture.find("NetworkPolicy", "allow-gateway-egress", "platform-gateway").inputs["spec"]["egress"]
    assert 8081 in {p["port"] for rule in egress for p in rule["ports"]}
    assert capture.outputs["workers"]["team-a"]["w"]["upstream"].endswith(":8081")
    # It downloads weights, so it gets the internet-egress policy.
    assert capture.find("NetworkPolicy", "w-internet-egress", "team-a")


def test_unknown_engines_are_refused_with_the_known_ones():
    from infra.stack_file import ConfigError, parse_stack_config, project_values

    config = minimal_config(workers=[{"name": "w", "engine": "tgi", "model": "m"}])
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(project_values(config), "s.yaml")
    assert "tenants[0].workers[0].engine" in str(caught.value)
    assert all(name in str(caught.value) for name in ENGINES)


@pytest.mark.parametrize("flavour", sorted(ENGINE_METRIC_NAMES))
def test_the_mock_exports_what_the_engine_entry_names(flavour):
    names = ENGINE_METRIC_NAMES[flavour]
    entry = ENGINES[flavour]
    assert names.waiting == entry.queue_metric
    exported = {names.waiting, names.running, names.time_to_first_token, names.e2e_latency, names.kv_cache_usage}
    counters = (names.prompt_tokens, names.generation_tokens, names.prefix_cache_queries, names.prefix_cache_hits)
    exported |= {f"{counter}_total" for counter in counters if counter}
    assert set(entry.metrics) <= exported
    # The mock engine exports its default flavour's names.
    assert ENGINES["mock"].queue_metric == ENGINE_METRIC_NAMES["vllm"].waiting
