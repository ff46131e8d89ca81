"""GatewayStack under mocks: the config Secret, the Deployment, Redis, isolation and exposure."""

from __future__ import annotations

import hashlib
import json

from tests.builders import stack_config

GATEWAY = "platform-gateway"  # the gateway's namespace


def document(capture):
    secret = capture.find("Secret", "gateway-config", GATEWAY).inputs["stringData"]
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
    deployment = capture.find("Deployment", "gateway", GATEWAY).inputs
    assert deployment["spec"]["replicas"] >= 2
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["GATEWAY_CONFIG_FILE"] == "/etc/gateway/gateway.json"
    assert env["GATEWAY_REDIS_URL"].startswith("redis://:$(REDIS_PASSWORD)@redis.platform-gateway.svc")
    assert not any("subPath" in m for m in container["volumeMounts"]), "subPath mounts never see Secret updates"
    assert capture.find("PodDisruptionBudget", "gateway", GATEWAY).inputs["spec"]["minAvailable"] == 1
    hpa = capture.find("HorizontalPodAutoscaler", "gateway", GATEWAY).inputs["spec"]
    assert hpa["minReplicas"] >= 2
    # No metrics-server: the HPA scales on the gateway's own in-flight gauge, which the adapter serves.
    [metric] = hpa["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == "gateway_inflight_requests"
    adapter = capture.releases()["prometheus-adapter"]
    served = [rule["name"]["as"] for rule in adapter.inputs["values"]["rules"]["custom"]]
    assert "gateway_inflight_requests" in served and "external" not in adapter.inputs["values"]["rules"]
    assert capture.find("ServiceMonitor", "gateway", GATEWAY)
    assert pod["priorityClassName"] == "platform-critical"


def test_redis_requires_a_generated_password(run_program):
    capture = run_program(stack_config("kind"), stack="kind")
    redis = capture.find("StatefulSet", "redis", GATEWAY).inputs["spec"]["template"]["spec"]
    [container] = redis["containers"]
    args = container["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert refs["REDIS_PASSWORD"] == refs["REDISCLI_AUTH"] == {"name": "redis-auth", "key": "password"}
    assert redis["priorityClassName"] == "platform-critical"
    gateway_env = capture.find("Deployment", "gateway", GATEWAY).inputs["spec"]["template"]["spec"]["containers"][0][
        "env"
    ]
    # Kubernetes expands $(VAR) only from variables defined earlier in the list.
    names = [e["name"] for e in gateway_env]
    assert names.index("REDIS_PASSWORD") < names.index("GATEWAY_REDIS_URL")
    assert capture.find("Secret", "redis-auth", GATEWAY)
    [password] = [r for r in capture.of_type("random:index/randomPassword:RandomPassword") if "redis" in r.name]
    assert password.inputs["length"] >= 32
    # Only the gateway may reach Redis: monitoring's allowance covers the gateway's pods, not Redis'.
    monitoring = capture.find("NetworkPolicy", "allow-monitoring", GATEWAY).inputs["spec"]
    assert monitoring["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "gateway"


def test_without_monitoring_no_monitor_and_no_metric_hpa(run_program):
    config = stack_config("kind")
    config["gpu-platform:monitoring"] = {"enabled": False}
    capture = run_program(config, stack="kind")
    kinds = {r.inputs["kind"] for r in capture.kubernetes()}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    assert not capture.objects("HorizontalPodAutoscaler", GATEWAY)


def test_redis_is_persistent_bounded_and_private(run_program):
    capture = run_program(stack_config("kind"), stack="kind")
    redis = capture.find("StatefulSet", "redis", GATEWAY).inputs["spec"]
    assert redis["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "1Gi"
    args = redis["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--maxmemory") + 1] == "256mb" and "noeviction" in args
    policy = capture.find("NetworkPolicy", "allow-gateway-to-redis", GATEWAY).inputs["spec"]
    assert policy["ingress"][0]["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "gateway", "app.kubernetes.io/instance": "gateway"}}}
    ]


def test_gateway_egress_reaches_only_tenant_workers_redis_and_dns(run_program):
    capture = run_program(stack_config("kind"), stack="kind")
    egress = capture.find("NetworkPolicy", "allow-gateway-egress", GATEWAY).inputs["spec"]["egress"]
    ports = sorted(p["port"] for rule in egress for p in rule["ports"])
    assert ports == [53, 53, 443, 6379, 6443, 8000]  # 443/6443: the API server, for the EndpointSlice watch


def test_gateway_may_watch_endpointslices_and_nothing_else(run_program):
    capture = run_program(stack_config("kind"), stack="kind")
    pod = capture.find("Deployment", "gateway", GATEWAY).inputs["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "gateway" and capture.find("ServiceAccount", "gateway", GATEWAY)
    [container] = pod["containers"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    token = mounts["/var/run/secrets/kubernetes.io/serviceaccount"]
    [volume] = [v for v in pod["volumes"] if v["name"] == token]
    assert {next(iter(source)) for source in volume["projected"]["sources"]} >= {"serviceAccountToken", "configMap"}
    roles = [r.inputs for r in capture.objects("ClusterRole")]
    [role] = [r for r in roles if "endpointslices" in r["metadata"]["name"]]
    assert role["rules"] == [
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]}
    ]
    [binding] = [
        r.inputs
        for r in capture.objects("ClusterRoleBinding")
        if r.inputs["roleRef"]["name"] == role["metadata"]["name"]
    ]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "gateway", "namespace": "platform-gateway"}]


def test_exposure_none_by_default_gateway_api_and_ingress_when_asked(run_program):
    # The default needs nothing from the cluster: a ClusterIP Service, reached by port-forward.
    kind = run_program(stack_config("kind"), stack="kind")
    assert not kind.objects("HTTPRoute", GATEWAY) and not kind.objects("Ingress", GATEWAY)
    assert kind.find("Service", "gateway", GATEWAY).inputs["spec"]["type"] == "ClusterIP"

    config = stack_config("kind")
    config["gpu-platform:gateway"] = {"exposure": "gateway-api", "gatewayApi": {"installCrds": True}}
    routed = run_program(config, stack="kind")
    [route] = [r.inputs for r in routed.objects("HTTPRoute", GATEWAY)]
    assert route["spec"]["parentRefs"][0]["kind"] == "Gateway" and route["spec"]["hostnames"] == ["gateway.local"]
    crds = {r.inputs["metadata"]["name"] for r in routed.objects("CustomResourceDefinition")}
    assert "httproutes.gateway.networking.k8s.io" in crds and "gateways.gateway.networking.k8s.io" in crds

    config["gpu-platform:gateway"] = {"exposure": "gateway-api"}
    assert not run_program(config, stack="kind").objects("CustomResourceDefinition"), (
        "the CRDs are installed only when asked"
    )

    minikube = run_program(stack_config("minikube"), stack="minikube")
    [ingress] = [r.inputs for r in minikube.objects("Ingress", GATEWAY)]
    assert ingress["spec"]["ingressClassName"] == "nginx" and not minikube.objects("HTTPRoute", GATEWAY)
    # minikube's addon never reports a load-balancer address: pulumi must not wait for one.
    assert ingress["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"


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


def test_metrics_have_their_own_port_open_only_to_monitoring(run_program):
    capture = run_program(stack_config("kind"), stack="kind")
    pod = capture.find("Deployment", "gateway", GATEWAY).inputs["spec"]["template"]["spec"]
    [container] = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert int(env["GATEWAY_METRICS_PORT"]) == int(ports["metrics"]) and ports["metrics"] != ports["http"]
    assert capture.find("ServiceMonitor", "gateway", GATEWAY).inputs["spec"]["endpoints"][0]["port"] == "metrics"
    clients = capture.find("NetworkPolicy", "allow-clients-to-gateway", GATEWAY).inputs["spec"]["ingress"]
    assert [p["port"] for rule in clients for p in rule["ports"]] == [ports["http"]], "clients never reach /metrics"
    [monitoring] = capture.find("NetworkPolicy", "allow-monitoring", GATEWAY).inputs["spec"]["ingress"]
    assert [p["port"] for p in monitoring["ports"]] == [ports["metrics"]]
    assert monitoring["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    # The drain lasts as long as the longest stream; the kubelet waits for preStop, the drain and a margin.
    drain = int(env["GATEWAY_DRAIN_SECONDS"])
    assert drain >= 120 and pod["terminationGracePeriodSeconds"] > drain + 5


def test_api_server_egress_narrowed_to_the_stacks_cidrs(run_program):
    config = stack_config("kind")
    config["gpu-platform:gateway"] = {**config.get("gpu-platform:gateway", {}), "apiServerCidrs": ["172.18.0.2/32"]}
    capture = run_program(config, stack="kind")
    egress = capture.find("NetworkPolicy", "allow-gateway-egress", GATEWAY).inputs["spec"]["egress"]
    [api] = [rule for rule in egress if {p["port"] for p in rule["ports"]} == {443, 6443}]
    assert api["to"] == [{"ipBlock": {"cidr": "172.18.0.2/32"}}]
    # Without the setting, only the ports bound it: the API servers' addresses differ per cluster.
    default = (
        run_program(stack_config("kind"), stack="kind").find("NetworkPolicy", "allow-gateway-egress", GATEWAY).inputs
    )
    [api] = [rule for rule in default["spec"]["egress"] if {p["port"] for p in rule["ports"]} == {443, 6443}]
    assert "to" not in api
