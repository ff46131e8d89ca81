"""MonitoringStack under mocks: charts, GPU metrics per pool mode, adapter rules, PrometheusRule."""

from __future__ import annotations

from tests.builders import minimal_config, stack_config


def test_kube_prometheus_stack_selects_every_monitor_and_rule(run_program):
    stack = run_program(minimal_config()).releases()["kube-prometheus-stack"].inputs
    assert stack["version"] == "88.5.3"
    spec = stack["values"]["prometheus"]["prometheusSpec"]
    for key in (
        "serviceMonitorSelectorNilUsesHelmValues",
        "podMonitorSelectorNilUsesHelmValues",
        "ruleSelectorNilUsesHelmValues",
    ):
        assert spec[key] is False
    assert spec["retention"] == "45d"
    assert spec["storageSpec"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"] == "50Gi"
    # Tenant-owned monitors cannot pose as the platform's jobs for another namespace.
    assert spec["enforcedNamespaceLabel"] == "namespace"
    excluded = {(e["resource"], e["namespace"]) for e in spec["excludedFromEnforcement"]}
    assert {
        ("servicemonitors", "monitoring"),
        ("servicemonitors", "gpu-operator"),
        ("prometheusrules", "monitoring"),
    } <= excluded
    assert not any(e["namespace"] in ("team-a", "team-b") for e in spec["excludedFromEnforcement"])
    assert stack["values"]["grafana"]["sidecar"]["dashboards"]["label"] == "grafana_dashboard"


def test_fake_pool_gets_a_service_monitor_for_the_fake_exporter(run_program):
    capture = run_program(minimal_config())
    assert "dcgm-exporter" not in capture.releases()
    monitor = capture.find("ServiceMonitor", "fake-gpu-metrics", "gpu-operator").inputs
    assert monitor["spec"]["selector"]["matchLabels"] == {"app": "nvidia-dcgm-exporter"}
    assert (
        monitor["spec"]["endpoints"][0]["port"] == "gpu-metrics"
        and monitor["spec"]["endpoints"][0]["honorLabels"] is True
    )


def test_real_pool_gets_dcgm_exporter_with_attribution_and_toleration(run_program):
    capture = run_program(stack_config("onprem"), stack="onprem")
    dcgm = capture.releases()["dcgm-exporter"].inputs
    assert dcgm["version"] == "4.8.2"
    values = dcgm["values"]
    assert values["serviceMonitor"] == {"enabled": True, "honorLabels": True}
    assert values["tolerations"] == [{"key": "gpu-only", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]
    assert values["nodeSelector"] == {"gpu": "true"}
    assert values["kubernetes"]["enablePodLabels"] is True


def test_adapter_serves_the_metric_the_worker_hpas_use(run_program):
    capture = run_program(stack_config("kind"), stack="kind")
    adapter = capture.releases()["prometheus-adapter"].inputs["values"]
    assert adapter["rules"]["default"] is False
    [rule] = [r for r in adapter["rules"]["custom"] if r["name"]["as"] == "inference_queue_depth"]
    hpa_metrics = {
        m["pods"]["metric"]["name"]
        for h in capture.objects("HorizontalPodAutoscaler")
        for m in h.inputs["spec"]["metrics"]
        if h.inputs["metadata"]["labels"]["app.kubernetes.io/component"] == "inference-worker"
    }
    assert hpa_metrics == {rule["name"]["as"]}
    assert "vllm:num_requests_waiting" in rule["seriesQuery"] and "sglang:num_queue_reqs" in rule["seriesQuery"]
    assert adapter["prometheus"]["url"] == "http://kube-prometheus-stack-prometheus.monitoring.svc"


def test_tenant_info_rules_map_every_tenant_namespace(run_program):
    capture = run_program(stack_config("kind"), stack="kind")
    [rule] = [r.inputs for r in capture.objects("PrometheusRule")]
    group = next(g for g in rule["spec"]["groups"] if g["name"] == "platform-tenants")
    mapping = {r["labels"]["namespace"]: r["labels"]["tenant"] for r in group["rules"]}
    assert mapping == {"acme": "acme", "globex": "globex", "globex-dev": "globex", "initech": "initech"}


def test_monitoring_can_be_disabled(run_program):
    config = minimal_config()
    config["gpu-platform:monitoring"] = {"enabled": False}
    capture = run_program(config)
    assert not capture.of_type("platform:monitoring:MonitoringStack")
    assert "kube-prometheus-stack" not in capture.releases()


def test_prometheus_storage_class_and_size_come_from_the_stack(run_program):
    config = minimal_config()
    config["gpu-platform:monitoring"] = {"storage": {"size": "200Gi", "storageClass": "fast-ssd"}, "retention": "62d"}
    spec = run_program(config).releases()["kube-prometheus-stack"].inputs["values"]["prometheus"]["prometheusSpec"]
    claim = spec["storageSpec"]["volumeClaimTemplate"]["spec"]
    assert claim["storageClassName"] == "fast-ssd" and claim["resources"]["requests"]["storage"] == "200Gi"
    assert spec["retention"] == "62d"


def test_retention_shorter_than_a_billing_month_is_a_config_error():
    from infra.stack_file import ConfigError, parse_stack_config, project_values

    config = minimal_config()
    config["gpu-platform:monitoring"] = {"retention": "15d"}
    try:
        parse_stack_config(project_values(config), "Pulumi.test.yaml")
    except ConfigError as exc:
        assert any(p.startswith("monitoring.retention:") and "31d" in p for p in exc.problems), exc.problems
    else:
        raise AssertionError("15d retention was accepted")
