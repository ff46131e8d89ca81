"""Routes and gateway settings: what the stack declares is what the gateway's own parser accepts."""

from __future__ import annotations

import pytest

from tests.unit.stack_file_cases import KIND_TEXT, StackFiles, accepted, kind, refused

CANARY = "mock-llama-8b: {strategy: canary, primary: llama-stable, canary: llama-canary, percent: 10}"


@pytest.fixture
def files(tmp_path) -> StackFiles:
    return StackFiles(tmp_path)


def route(text: str) -> str:
    return KIND_TEXT.replace(CANARY, f"mock-llama-8b: {text}")


def test_the_stack_and_the_gateway_share_one_route_model():
    from infra.config import Route
    from services.gateway import config as gateway

    assert Route is gateway.Route


@pytest.mark.parametrize("percent", ["0", "100", "12.5"])
def test_canary_percent_in_range(files, percent):
    accepted(
        files.text(route(f"{{strategy: canary, primary: llama-stable, canary: llama-canary, percent: {percent}}}"))
    )


@pytest.mark.parametrize(
    ("percent", "expected"), [("101", "must be <= 100"), ("-1", "must be >= 0"), (".nan", ""), (".inf", "")]
)
def test_canary_percent_out_of_range(files, percent, expected):
    path = files.text(route(f"{{strategy: canary, primary: llama-stable, canary: llama-canary, percent: {percent}}}"))
    refused(path, "tenants[1].routes.mock-llama-8b.percent: " + expected)


def test_weights_in_range(files):
    accepted(files.text(route("{strategy: weighted, weights: {llama-stable: 90, llama-canary: 0}}")))


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ("{llama-stable: -1, llama-canary: 2}", "tenants[1].routes.mock-llama-8b.weights.llama-stable: must be >= 0"),
        (
            "{llama-stable: 101, llama-canary: 2}",
            "tenants[1].routes.mock-llama-8b.weights.llama-stable: must be <= 100",
        ),
        ("{llama-stable: .inf, llama-canary: 2}", "tenants[1].routes.mock-llama-8b.weights.llama-stable: "),
        ("{llama-stable: .nan, llama-canary: 2}", "tenants[1].routes.mock-llama-8b.weights.llama-stable: "),
        (
            "{llama-stable: 0, llama-canary: 0}",
            "tenants[1].routes.mock-llama-8b: a weighted route needs at least one weight above 0",
        ),
    ],
)
def test_weights_out_of_range(files, weights, expected):
    refused(files.text(route(f"{{strategy: weighted, weights: {weights}}}")), expected)


def test_route_to_an_unknown_worker(files):
    refused(files.text(route("{strategy: direct, primary: nobody}")), "routes.mock-llama-8b: unknown worker 'nobody'")


def test_every_allowed_model_is_served(files):
    accepted(files.text(KIND_TEXT.replace("models: [mock-qwen-0.5b]", "models: [mock-qwen-0.5b]")))
    refused(
        files.text(KIND_TEXT.replace("models: [mock-qwen-0.5b]", "models: [mock-qwen-0.5b, gpt-9]")),
        "tenants[2].models[1]: tenant 'initech' may call 'gpt-9', but none of its workers serves it",
    )


def test_a_model_only_another_tenant_serves_is_not_served(files):
    refused(
        files.text(KIND_TEXT.replace("models: [mock-qwen-0.5b]", "models: [mock-llama-8b]")),
        "tenants[2].models[0]: tenant 'initech' may call 'mock-llama-8b'",
    )


def test_limits_the_gateway_refuses_are_refused_at_config_time(files):
    tenant_level = KIND_TEXT.replace(
        "    - name: initech\n", "    - name: initech\n      gateway: {maxConcurrency: 0}\n"
    )
    refused(
        files.text(tenant_level),
        "tenants[2]: the gateway would refuse the configuration of tenant 'initech'",
        "maxConcurrency",
    )
    tier_level = KIND_TEXT.replace(
        "      quota: {cpu: 500m,", "      gateway: {maxConcurrency: 0}\n      quota: {cpu: 500m,"
    )
    refused(files.text(tier_level), "tenants[2]: the gateway would refuse the configuration of tenant 'initech'")
    accepted(files.text(tenant_level.replace("maxConcurrency: 0", "maxConcurrency: 1")))


def test_the_rendered_gateway_document_is_read_back_by_the_gateway(files, monkeypatch):
    """The preview parses what the program wrote into the gateway's Secret, not only the config-time build."""
    from infra import program

    real = program.gateway_document

    def drifted(config, hashes, upstreams):
        document = real(config, hashes, upstreams)
        document["tenants"]["initech"]["limits"]["maxConcurrency"] = 0
        return document

    monkeypatch.setattr(program, "gateway_document", drifted)
    refused(
        files.text(KIND_TEXT),
        "tenants[2]: the gateway would refuse the configuration of tenant 'initech' (limits.maxConcurrency",
        command="preview",
    )


def _with_api_server_cidrs(files: StackFiles, cidr: str):
    config = kind()
    config["gpu-platform:gateway"] = {**config.get("gpu-platform:gateway", {}), "apiServerCidrs": [cidr]}
    return files.config(config)


@pytest.mark.parametrize("cidr", ["10.96.0.1", "172.18.0.0/16", "fd00::1/128"])
def test_api_server_cidrs_accept_addresses_and_blocks(files, cidr):
    accepted(_with_api_server_cidrs(files, cidr))


@pytest.mark.parametrize("cidr", ["172.18.0.1/16", "not-an-address", "10.0.0.0/33"])
def test_api_server_cidrs_refuse_what_is_no_cidr_block(files, cidr):
    refused(_with_api_server_cidrs(files, cidr), "gateway.apiServerCidrs[0]", "is not a CIDR block")
