"""Every name and label value the program renders is one the API server accepts, checked at config time."""

from __future__ import annotations

import pytest

from tests.unit.stack_file_cases import StackFiles, accepted, refused


@pytest.fixture
def files(tmp_path) -> StackFiles:
    return StackFiles(tmp_path)


def tenant(config, index=0):
    return config["gpu-platform:tenants"][index]


def worker(config, tenant_index=0, index=0):
    return tenant(config, tenant_index)["workers"][index]


def setting(section, *keys):
    """`setting("gateway", "parentGateway", "name")(config, "x")` sets gpu-platform:gateway.parentGateway.name."""

    def change(config, value):
        node = config.setdefault(f"gpu-platform:{section}", {})
        *parents, last = keys
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return change


# (what is set, a value the API server accepts, one it refuses, the key the error names)
CASES = [
    ("tenant name", lambda c, v: tenant(c).update(name=v), "a" * 40, "acme\n", "tenants[0].name"),
    ("tenant name length", lambda c, v: tenant(c).update(name=v), "a" * 40, "a" * 41, "tenants[0].name"),
    ("tenant name case", lambda c, v: tenant(c).update(name=v), "acme-2", "Acme", "tenants[0].name"),
    ("worker name", lambda c, v: worker(c).update(name=v), "l1", "1llama", "tenants[0].workers[0].name"),
    ("worker newline", lambda c, v: worker(c).update(name=v), "llama", "llama\n", "tenants[0].workers[0].name"),
    (
        "environment",
        lambda c, v: tenant(c, 1).update(environments=[v, "prod"]),
        "dev-2",
        "dev_2",
        "tenants[1].environments[0]",
    ),
    ("cost center", lambda c, v: tenant(c).update(costCenter=v), "CC_10.01", "cc 1001", "tenants[0].costCenter"),
    ("cost center length", lambda c, v: tenant(c).update(costCenter=v), "c" * 63, "c" * 64, "tenants[0].costCenter"),
    ("cost center end", lambda c, v: tenant(c).update(costCenter=v), "cc-1", "cc-", "tenants[0].costCenter"),
    (
        "model",
        lambda c, v: worker(c).update(servedModelName=v) or tenant(c).update(models=[v]),
        "org/m-1.5",
        "my model",
        "tenants[0].workers[0].servedModelName",
    ),
    (
        "secret",
        lambda c, v: (worker(c).update(hfTokenSecret=v), c.update({"gpu-platform:huggingFaceToken": "hf_x"})),
        "hf.token",
        "HF_TOKEN",
        "tenants[0].workers[0].hfTokenSecret",
    ),
    (
        "cache storage class",
        lambda c, v: worker(c).update(cache={"size": "1Gi", "storageClass": v}),
        "gp3",
        "gp3 ",
        "tenants[0].workers[0].cache.storageClass",
    ),
    (
        "image",
        lambda c, v: worker(c).update(image=v),
        "ghcr.io/x/y:1",
        "ghcr.io/x/y:1\n",
        "tenants[0].workers[0].image",
    ),
    ("hostname", setting("gateway", "hostname"), "*.example.com", "gateway_local", "gateway.hostname"),
    ("hostname ip", setting("gateway", "hostname"), "gw.example.com", "10.0.0.1", "gateway.hostname"),
    ("parent name", setting("gateway", "parentGateway", "name"), "edge.gw", "Edge", "gateway.parentGateway.name"),
    (
        "parent namespace",
        setting("gateway", "parentGateway", "namespace"),
        "edge",
        "edge.gw",
        "gateway.parentGateway.namespace",
    ),
    (
        "section",
        setting("gateway", "parentGateway", "sectionName"),
        "https",
        "HTTPS",
        "gateway.parentGateway.sectionName",
    ),
    (
        "redis storage class",
        setting("gateway", "redis", "storageClass"),
        "fast-ssd",
        "fast/ssd",
        "gateway.redis.storageClass",
    ),
    ("node", lambda c, v: c["gpu-platform:gpuPool"].update(nodes=[v]), "node-1.lan", "node 1", "gpuPool.nodes[0]"),
    (
        "pool label",
        lambda c, v: c["gpu-platform:gpuPool"].update(label=v),
        "example.com/pool=gpu_1",
        "pool=gpu.",
        "gpuPool.label.value",
    ),
    (
        "pool label key",
        lambda c, v: c["gpu-platform:gpuPool"].update(label=v),
        "pool=gpu",
        "Pool.io/x=gpu",
        "gpuPool.label.key",
    ),
    (
        "pool label prefix",
        lambda c, v: c["gpu-platform:gpuPool"].update(label=v),
        "gpu.example.com/pool=gpu",
        "node.kubernetes.io/pool=gpu",
        "gpuPool.label.key",
    ),
    (
        "taint key prefix",
        lambda c, v: c["gpu-platform:gpuPool"].update(taint=v, mode="onprem", gpusPerNode=8),
        "gpu-only=true:NoSchedule",
        "node.kubernetes.io/unschedulable=true:NoSchedule",
        "gpuPool.taint.key",
    ),
    (
        "taint value",
        lambda c, v: c["gpu-platform:gpuPool"].update(taint=v),
        "nvidia.com/gpu=a.b:NoSchedule",
        f"nvidia.com/gpu={'x' * 64}:NoSchedule",
        "gpuPool.taint.value",
    ),
    (
        "fake product",
        lambda c, v: c["gpu-platform:gpuPool"]["fake"].update(gpuProduct=v),
        "NVIDIA-A100",
        "NVIDIA A100",
        "gpuPool.fake.gpuProduct",
    ),
    (
        "fake pool",
        lambda c, v: c["gpu-platform:gpuPool"]["fake"].update(pool=v),
        "pool_1",
        "pool/1",
        "gpuPool.fake.pool",
    ),
    ("platform namespace", setting("platform", "namespaces", "system"), "ops", "Ops", "platform.namespaces.system"),
]


@pytest.mark.parametrize(("what", "change", "good", "bad", "key"), CASES, ids=[case[0] for case in CASES])
def test_rendered_names(files, what, change, good, bad, key):
    accepted(files.kind_with(lambda config: change(config, good)))
    refused(files.kind_with(lambda config: change(config, bad)), f"{key}: ")


def test_ingress_class_name(files):
    def ingress(name):
        return lambda config: (
            setting("gateway", "exposure")(config, "ingress"),
            setting("gateway", "ingressClassName")(config, name),
        )

    accepted(files.kind_with(ingress("traefik")))
    refused(files.kind_with(ingress("Traefik!")), "gateway.ingressClassName: ")


def test_worker_instance_label_joins_tenant_and_worker(files):
    """`app.kubernetes.io/instance` is `<tenant>-<worker>`: each may be 40 characters, together at most 63."""

    def names(tenant_name, worker_name):
        return lambda config: (tenant(config).update(name=tenant_name), worker(config).update(name=worker_name))

    accepted(files.kind_with(names("t" * 40, "w" * 22)))
    refused(
        files.kind_with(names("t" * 40, "w" * 23)),
        "tenants[0].workers[0].name: the worker's app.kubernetes.io/instance label",
        "tenants[0].name + '-' + tenants[0].workers[0].name",
    )


@pytest.mark.parametrize("name", ["default", "kube-system", "kube-public", "kube-node-lease", "kube-anything"])
def test_tenant_named_like_a_kubernetes_namespace(files, name):
    refused(files.kind_with(lambda c: tenant(c).update(name=name)), "tenants[0].name: ", "Kubernetes namespace")


def test_environment_namespace_that_is_a_kubernetes_namespace(files):
    def change(config):
        tenant(config).update(name="kube", environments=["system", "prod"])
        worker(config).update(environment="prod")

    refused(files.kind_with(change), "tenants[0].environments[0]: namespace 'kube-system' of tenant 'kube'")


@pytest.mark.parametrize("field", ["system", "gateway", "monitoring", "gpuOperator"])
def test_tenant_namespace_that_is_the_platforms(files, field):
    def change(config):
        config["gpu-platform:platform"]["namespaces"] = {field: "shared"}
        tenant(config, 2).update(name="shared")

    refused(files.kind_with(change), "tenants[2].name: namespace 'shared'", f"platform.namespaces.{field}")


def test_tenant_namespace_of_the_parent_gateway(files):
    def change(config):
        config["gpu-platform:gateway"] = {"exposure": "gateway-api"}
        tenant(config, 2).update(name="gateway-system")

    refused(files.kind_with(change), "gateway.parentGateway.namespace")


def test_tenant_namespaces_collide(files):
    # globex has environments [dev, prod]: its dev namespace is globex-dev.
    accepted(files.kind_with(lambda c: tenant(c, 2).update(name="globex-prod")))
    refused(
        files.kind_with(lambda c: tenant(c, 2).update(name="globex-dev")),
        "tenants[2].name: namespace 'globex-dev' of tenant 'globex-dev' collides with tenant 'globex' (tenants[1].environments[0])",
    )


@pytest.mark.parametrize("name", ["default", "kube-system", "kube-x"])
def test_platform_namespace_may_not_be_a_kubernetes_one(files, name):
    refused(
        files.kind_with(lambda c: setting("platform", "namespaces", "monitoring")(c, name)),
        "platform.namespaces.monitoring: ",
    )


def test_platform_namespaces_are_distinct(files):
    accepted(files.kind_with(lambda c: setting("platform", "namespaces", "gateway")(c, "edge")))
    refused(
        files.kind_with(lambda c: setting("platform", "namespaces", "gateway")(c, "monitoring")),
        "platform.namespaces.monitoring: 'monitoring' is already platform.namespaces.gateway",
    )


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("system:masters", "system identity"),
        ("system:serviceaccount:kube-system:default", "system identity"),
        ("SYSTEM:masters", "system identity"),
        ("", "cannot be empty"),
        ("   ", "cannot be empty"),
        (" alice", "whitespace"),
    ],
)
@pytest.mark.parametrize("kind", ["users", "groups"])
def test_rbac_subjects(files, kind, subject, expected):
    accepted(files.kind_with(lambda c: tenant(c).update({kind: {"viewer": ["systems-team", "alice:ops"]}})))
    refused(
        files.kind_with(lambda c: tenant(c).update({kind: {"viewer": [subject]}})),
        f"tenants[0].{kind}.viewer[0]: ",
        expected,
    )


def test_gpu_nodes_listed_once(files):
    accepted(files.kind_with(lambda c: c["gpu-platform:gpuPool"].update(nodes=["n1", "n2"])))
    refused(
        files.kind_with(lambda c: c["gpu-platform:gpuPool"].update(nodes=["n1", "n2", "n1"])),
        "gpuPool.nodes[2]: 'n1' is listed twice (first at gpuPool.nodes[0])",
    )


def test_the_preview_checks_every_rendered_name_and_label(files, monkeypatch):
    """The last line behind the config checks: a label value nobody validated still fails with exit 2."""
    from components import labels

    monkeypatch.setattr(labels, "PART_OF", "gpu platform")
    refused(
        files.kind_with(lambda config: None),
        "Namespace acme: metadata.labels.app.kubernetes.io/part-of: 'gpu platform' is not a valid label value",
        command="preview",
    )


def test_storage_classes_of_the_platform_and_prometheus(files):
    def platform(value):
        return lambda c: c["gpu-platform:platform"].update(storageClass=value)

    def prometheus(value):
        return lambda c: c.update({"gpu-platform:monitoring": {"storage": {"storageClass": value}}})

    for change, key in ((platform, "platform.storageClass"), (prometheus, "monitoring.storage.storageClass")):
        accepted(files.kind_with(change("local-path")))
        refused(files.kind_with(change("Local Path")), f"{key}: ")
