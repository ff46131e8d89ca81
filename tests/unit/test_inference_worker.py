"""InferenceWorker under mocks, for each engine, on every shipped stack."""

from __future__ import annotations

import pytest

from tests.builders import STACKS, minimal_config, stack_config


def deployments(capture):
    return [
        r
        for r in capture.objects("Deployment")
        if r.inputs["metadata"]["labels"].get("app.kubernetes.io/component") == "inference-worker"
    ]


def gpu_request(container):
    return container["resources"]["requests"].get("nvidia.com/gpu", "0")


@pytest.mark.parametrize("stack", STACKS)
def test_every_gpu_worker_is_placed_on_the_gpu_pool(run_program, stack):
    capture = run_program(stack_config(stack), stack=stack)
    pool = capture.outputs["gpuPool"]
    workers = deployments(capture)
    assert workers, f"{stack} has no workers"
    for deployment in workers:
        pod = deployment.inputs["spec"]["template"]["spec"]
        gpus = sum(int(gpu_request(c)) for c in pod["containers"])
        for container in pod["containers"]:
            assert container["resources"]["limits"]["nvidia.com/gpu"] == gpu_request(container)
        if gpus:
            assert pod["nodeSelector"] == pool["nodeSelector"], deployment.name
            assert pool["toleration"] in pod["tolerations"], deployment.name
        else:
            assert "tolerations" not in pod, f"{deployment.name} requests no GPU but tolerates the GPU taint"


def worker_capture(run_program, **worker):
    config = minimal_config(workers=[{"name": "w", "model": "org/model-7b", **worker}], quota={"gpu": 4})
    if worker.get("hfTokenSecret"):
        config["gpu-platform:huggingFaceToken"] = {"secure": "v1:ciphertext"}
    return run_program(config)


def test_hpa_defaults_scale_on_queue_depth(run_program):
    capture = worker_capture(run_program, engine="vllm")
    hpa = capture.find("HorizontalPodAutoscaler", "w", "team-a").inputs["spec"]
    assert hpa["metrics"][0]["pods"]["metric"]["name"] == "inference_queue_depth"
    assert hpa["metrics"][0]["pods"]["target"] == {"type": "AverageValue", "averageValue": "5"}
    up, down = hpa["behavior"]["scaleUp"], hpa["behavior"]["scaleDown"]
    assert up["stabilizationWindowSeconds"] == 60
    assert up["policies"] == [{"type": "Pods", "value": 4, "periodSeconds": 60}]
    assert down["stabilizationWindowSeconds"] == 300
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "w"}


def test_autoscaling_overrides(run_program):
    capture = worker_capture(
        run_program,
        engine="mock",
        autoscaling={"minReplicas": 2, "maxReplicas": 3, "targetQueueDepth": 2.5, "scaleUpPods": 1},
    )
    hpa = capture.find("HorizontalPodAutoscaler", "w", "team-a").inputs["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 3)
    assert hpa["metrics"][0]["pods"]["target"]["averageValue"] == "2500m"
    assert hpa["behavior"]["scaleUp"]["policies"][0]["value"] == 1


def test_vllm_worker_args_probes_and_draining(run_program):
    capture = worker_capture(
        run_program,
        engine="vllm",
        gpus=2,
        tensorParallelSize=2,
        maxModelLen=8192,
        hfTokenSecret="hf",
        cache={"size": "40Gi"},
    )
    pod = capture.find("Deployment", "w", "team-a").inputs["spec"]["template"]["spec"]
    [engine] = pod["containers"]
    args = engine["args"]
    assert args[args.index("--model") + 1] == "org/model-7b"
    assert args[args.index("--tensor-parallel-size") + 1] == "2"
    assert args[args.index("--max-model-len") + 1] == "8192"
    assert engine["resources"]["requests"]["nvidia.com/gpu"] == "2"
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "HF_TOKEN"}}} in engine["env"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert engine[probe]["httpGet"]["path"] == "/health"
    assert engine["lifecycle"]["preStop"]["sleep"]["seconds"] > 0
    assert pod["terminationGracePeriodSeconds"] > engine["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert any(v.get("persistentVolumeClaim", {}).get("claimName") == "w-model-cache" for v in pod["volumes"])
    claim = capture.find("PersistentVolumeClaim", "w-model-cache", "team-a").inputs
    assert claim["spec"]["resources"]["requests"]["storage"] == "40Gi"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    # Real engines download weights: they get HTTPS egress, but not to private ranges.
    policy = capture.find("NetworkPolicy", "w-internet-egress", "team-a").inputs
    egress = policy["spec"]["egress"][0]
    assert egress["to"][0]["ipBlock"]["cidr"] == "0.0.0.0/0" and "10.0.0.0/8" in egress["to"][0]["ipBlock"]["except"]
    # uid 10001 has no passwd entry: torch needs USER, and its caches a writable place.
    env = {e["name"]: e.get("value") for e in engine["env"]}
    assert (
        env["USER"] and env["TORCHINDUCTOR_CACHE_DIR"].startswith("/tmp/") and env["XDG_CACHE_HOME"].startswith("/tmp/")
    )
    # The token's Secret is created by the platform in the worker's namespace (this update creates both).
    secret = capture.find("Secret", "hf", "team-a").inputs
    assert "HF_TOKEN" in str(secret["stringData"])


def test_hf_token_secret_without_a_token_is_refused(run_program):
    from infra.stack_file import ConfigError, parse_stack_config, project_values

    config = minimal_config(workers=[{"name": "w", "engine": "vllm", "model": "m", "hfTokenSecret": "hf"}])
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(project_values(config), "s.yaml")
    assert "tenants[0].workers[0].hfTokenSecret" in str(caught.value) and "huggingFaceToken" in str(caught.value)


def test_mock_worker_env_has_no_engine_cache_settings(run_program):
    capture = worker_capture(run_program, engine="mock", gpus=0)
    [engine] = capture.find("Deployment", "w", "team-a").inputs["spec"]["template"]["spec"]["containers"]
    assert "TORCHINDUCTOR_CACHE_DIR" not in {e["name"] for e in engine["env"]}


def test_sglang_worker_runs_its_launcher(run_program):
    capture = worker_capture(run_program, engine="sglang")
    pod = capture.find("Deployment", "w", "team-a").inputs["spec"]["template"]["spec"]
    engine = pod["containers"][0]
    assert engine["command"] == ["python3", "-m", "sglang.launch_server"]
    assert "--enable-metrics" in engine["args"] and engine["image"].startswith("lmsysorg/sglang:")


def test_worker_service_pdb_and_service_monitor(run_program):
    capture = worker_capture(run_program, engine="mock", gpus=0)
    service = capture.find("Service", "w", "team-a").inputs["spec"]
    assert service["type"] == "ClusterIP" and service["ports"][0]["port"] == 8000
    assert capture.find("PodDisruptionBudget", "w", "team-a").inputs["spec"]["maxUnavailable"] == 1
    monitor = capture.find("ServiceMonitor", "w", "team-a").inputs["spec"]
    assert monitor["endpoints"][0]["path"] == "/metrics"
    assert monitor["selector"]["matchLabels"] == service["selector"]
    # A mock needs no internet.
    assert not [r for r in capture.objects("NetworkPolicy") if "internet" in r.inputs["metadata"]["name"]]


def test_canary_routes_and_upstreams_are_exported(run_program):
    capture = run_program(stack_config("kind"), stack="kind")
    routes = capture.outputs["routes"]["globex"]
    assert routes["mock-llama-8b"] == {
        "strategy": "canary",
        "primary": "llama-stable",
        "canary": "llama-canary",
        "percent": 10.0,
    }
    upstream = capture.outputs["workers"]["globex"]["llama-stable"]["upstream"]
    assert upstream == "http://llama-stable.globex.svc.cluster.local:8000"


@pytest.mark.parametrize(
    ("tenant", "expected"),
    [
        ({"workers": [{"name": "w", "engine": "mock", "model": "m", "environment": "dev"}]}, "workers[0].environment"),
        (
            {"routes": {"m": {"strategy": "canary", "primary": "a", "canary": "b", "percent": 5}}},
            "routes.m: unknown worker",
        ),
        (
            {"workers": [{"name": "w", "engine": "vllm", "model": "m", "gpus": 1, "tensorParallelSize": 2}]},
            "tensorParallelSize",
        ),
        ({"workers": [{"name": "w", "engine": "no-such-engine", "model": "m"}]}, "engine"),
    ],
)
def test_worker_config_errors(tenant, expected):
    from infra.stack_file import ConfigError, parse_stack_config, project_values

    with pytest.raises(ConfigError) as caught:
        parse_stack_config(project_values(minimal_config(**tenant)), "s.yaml")
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems
