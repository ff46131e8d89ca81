"""GatewayStack under mocks: the config Secret, the Deployment, Redis, isolation and exposure."""

from __future__ import annotations

import hashlib
import json

from tests.conftest import stack_config


def objects(capture, kind, namespace="platform-gateway"):
    return {
        r.inputs["metadata"]["name"]: r.inputs
        for r in capture.kubernetes()
        if r.inputs["kind"] == kind and r.inputs["metadata"].get("namespace") == namespace
    }


def document(capture):
    secret = objects(capture, "Secret")["gateway-config"]["stringData"]
    return json.loads(secret["value"]["gateway.json"] if "value" in secret else secret["gateway.json"])


def test_config_holds_hashes_limits_and_per_tenant_routes(run_program):
    capture = run_program(stack_config("kind"), stack="kind")
    doc = document(capture)
    acme = doc["tenants"]["acme"]
    keys = capture.find("Secret", "tenant-api-keys", "acme").inputs["stringData"]["value"]
    assert acme["keyHashes"] == sorted(hashlib.sha256(k.encode()).hexdigest() for k in keys.values())
    assert all(k not in json.dumps(doc) for k in keys.values()), "a raw key reached the gateway config"
    assert acme["limits"] == {"rpm": 600, "tpm": 200000, "maxConcurrency": 32, "maxQueue": 64}
    assert acme["weight"] == 4 and acme["models"] == ["mock-llama-8b"]
    assert acme["upstreams"] == {"llama": "http://llama.acme.svc.cluster.local:8000"}
    assert acme["routes"] == {"mock-llama-8b": {"strategy": "direct", "primary": "llama"}}
    globex = doc["tenants"]["globex"]
    assert globex["routes"]["mock-llama-8b"] == {
        "strategy": "canary",
        "primary": "llama-stable",
        "canary": "llama-canary",
        "percent": 10.0,
    }
    # Routing is per tenant: no tenant's upstreams point into another tenant's namespace.
    for name, tenant in doc["tenants"].items():
        for url in tenant["upstreams"].values():
            assert f".{name}.svc" in url or f".{name}-" in url


def test_gateway_deployment_is_replicated_probed_and_reloads_config(run_program):
    capture = run_program(stack_config("kind"), stack="kind")
    deployment = objects(capture, "Deployment")["gateway"]
    assert deployment["spec"]["replicas"] >= 2
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["GATEWAY_CONFIG_FILE"] == "/etc/gateway/gateway.json"
    assert env["GATEWAY_REDIS_URL"].startswith("redis://redis.platform-gateway.svc")
    assert not any("subPath" in m for m in container["volumeMounts"]), "subPath mounts never see Secret updates"
    assert objects(capture, "PodDisruptionBudget")["gateway"]["spec"]["minAvailable"] == 1
    assert objects(capture, "HorizontalPodAutoscaler")["gateway"]["spec"]["minReplicas"] >= 2
    assert "gateway" in objects(capture, "ServiceMonitor")


def test_redis_is_persistent_bounded_and_private(run_program):
    capture = run_program(stack_config("kind"), stack="kind")
    redis = objects(capture, "StatefulSet")["redis"]["spec"]
    assert redis["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "1Gi"
    args = redis["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--maxmemory") + 1] == "256mb" and "noeviction" in args
    policy = objects(capture, "NetworkPolicy")["allow-gateway-to-redis"]["spec"]
    assert policy["ingress"][0]["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "gateway", "app.kubernetes.io/instance": "gateway"}}}
    ]


def test_gateway_egress_reaches_only_tenant_workers_redis_and_dns(run_program):
    capture = run_program(stack_config("kind"), stack="kind")
    egress = objects(capture, "NetworkPolicy")["allow-gateway-egress"]["spec"]["egress"]
    ports = sorted(p["port"] for rule in egress for p in rule["ports"])
    assert ports == [53, 53, 443, 6379, 6443, 8000]  # 443/6443: the API server, for the EndpointSlice watch


def test_gateway_may_watch_endpointslices_and_nothing_else(run_program):
    capture = run_program(stack_config("kind"), stack="kind")
    pod = objects(capture, "Deployment")["gateway"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "gateway" and "gateway" in objects(capture, "ServiceAccount")
    [container] = pod["containers"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    token = mounts["/var/run/secrets/kubernetes.io/serviceaccount"]
    [volume] = [v for v in pod["volumes"] if v["name"] == token]
    assert {next(iter(source)) for source in volume["projected"]["sources"]} >= {"serviceAccountToken", "configMap"}
    roles = [r.inputs for r in capture.kubernetes() if r.inputs["kind"] == "ClusterRole"]
    [role] = [r for r in roles if "endpointslices" in r["metadata"]["name"]]
    assert role["rules"] == [
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]}
    ]
    [binding] = [
        r.inputs
        for r in capture.kubernetes()
        if r.inputs["kind"] == "ClusterRoleBinding" and r.inputs["roleRef"]["name"] == role["metadata"]["name"]
    ]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "gateway", "namespace": "platform-gateway"}]


def test_exposure_gateway_api_by_default_and_ingress_when_asked(run_program):
    kind = run_program(stack_config("kind"), stack="kind")
    [route] = objects(kind, "HTTPRoute").values()
    assert route["spec"]["parentRefs"][0]["kind"] == "Gateway" and route["spec"]["hostnames"] == ["gateway.local"]
    assert not objects(kind, "Ingress")
    minikube = run_program(stack_config("minikube"), stack="minikube")
    [ingress] = objects(minikube, "Ingress").values()
    assert ingress["spec"]["ingressClassName"] == "nginx" and not objects(minikube, "HTTPRoute")


def test_the_document_is_what_the_gateway_accepts(run_program):
    """The contract between GatewayStack and the gateway: its own models parse the generated document."""
    from services.gateway.config import Document, KeyIndex, validate

    for stack in ("kind", "gpu-cloud"):
        capture = run_program(stack_config(stack), stack=stack)
        parsed = validate(Document.model_validate(document(capture)))
        index = KeyIndex(parsed)
        for tenant in parsed.tenants:
            # Every shipped tenant has a prod environment, whose namespace is the tenant's name.
            keys = capture.find("Secret", "tenant-api-keys", tenant).inputs["stringData"]["value"]
            assert {index.tenant(key) for key in keys.values()} == {tenant}
