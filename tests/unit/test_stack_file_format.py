"""The stack file's YAML: duplicate keys, namespaces of config keys, aliases, YAML 1.1 scalars, bytes."""

from __future__ import annotations

import time

import pytest

from infra.stack_file import MAX_FILE_BYTES
from tests.unit.stack_file_cases import KIND_TEXT, StackFiles, accepted, refused


@pytest.fixture
def files(tmp_path) -> StackFiles:
    return StackFiles(tmp_path)


def test_shipped_text_is_accepted(files):
    accepted(files.text(KIND_TEXT))


def test_duplicate_key_names_key_and_both_lines(files):
    text = KIND_TEXT.replace("    flavour: kind\n", "    flavour: kind\n    flavour: minikube\n")
    path = files.text(text)
    first = KIND_TEXT.splitlines().index("    flavour: kind") + 1
    refused(path, f"line {first + 1}: duplicate key 'flavour' (first at line {first})")


def test_duplicate_top_level_config_key(files):
    text = KIND_TEXT.replace("  gpu-platform:gpuPool:\n", "  gpu-platform:tiers: {}\n  gpu-platform:gpuPool:\n")
    refused(files.text(text), "duplicate key 'gpu-platform:tiers'")


def test_merge_keys_override_without_being_duplicates(files):
    text = KIND_TEXT.replace(
        "        - {name: qwen, engine: mock, model: mock-qwen-0.5b, gpus: 1, autoscaling: {maxReplicas: 1}}",
        "        - &qwen {name: qwen, engine: mock, model: mock-qwen-0.5b, gpus: 1, autoscaling: {maxReplicas: 1}}\n"
        "        - {<<: *qwen, name: qwen-two, gpus: 0}",
    )
    accepted(files.text(text))


def test_provider_namespaces_are_accepted(files):
    text = KIND_TEXT.replace(
        "  kubernetes:context: kind-gpu-platform\n",
        "  kubernetes:context: kind-gpu-platform\n  aws:region: us-west-2\n  random:x: y\n  pulumi:template: t\n",
    )
    accepted(files.text(text))


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("kubernets:context", "kubernets:context: unknown config namespace 'kubernets'"),
        ("gpu-platfrom:tiers", "did you mean gpu-platform:tiers?"),
        ("gcp:project", "gcp:project: unknown config namespace 'gcp'"),
        ("tiers", "tiers: Pulumi config keys are namespaced: write gpu-platform:tiers"),
    ],
)
def test_unknown_config_namespace_is_an_error(files, key, expected):
    refused(files.text(KIND_TEXT.replace("  kubernetes:context:", f"  {key}:")), expected)


def test_recursive_alias_is_refused(files):
    started = time.monotonic()
    refused(files.text("config: &loop\n  gpu-platform:tenants: [*loop]\n"), "alias refers to the mapping or list")
    assert time.monotonic() - started < 10


def test_alias_bomb_is_refused_quickly(files):
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    text = "\n".join(lines) + "\nconfig:\n  gpu-platform:tenants: *a9\n"
    started = time.monotonic()
    refused(files.text(text), "aliases expand this document to more than")
    assert time.monotonic() - started < 10


def test_nesting_too_deep_is_refused(files):
    refused(files.text("config: " + "[" * 5000 + "]" * 5000 + "\n"), "nest too deeply")


@pytest.mark.parametrize(
    ("name", "read_as"),
    [
        ("no", "the boolean false"),
        ("yes", "the boolean true"),
        ("on", "the boolean true"),
        ("off", "the boolean false"),
        ("1e3", "the number 1000.0"),
        ("0x10", "the number 16"),
        ("012", "the number 10"),
        ("null", "null"),
    ],
)
def test_yaml_scalar_where_a_tenant_name_belongs(files, name, read_as):
    path = files.text(KIND_TEXT.replace("    - name: initech\n", f"    - name: {name}\n"))
    refused(path, "tenants[2].name: ", f"unquoted {name!r} as {read_as}", f'write it in quotes: "{name}"')
    # In quotes it is the name (for the ones that are valid names).
    if name in ("no", "yes", "on", "off", "1e3", "012"):
        accepted(files.text(KIND_TEXT.replace("    - name: initech\n", f'    - name: "{name}"\n')))


def test_yaml_booleans_in_a_list_of_environments(files):
    path = files.text(KIND_TEXT.replace("environments: [dev, prod]", "environments: [on, off]"))
    refused(path, "tenants[1].environments[0]: ", 'write it in quotes: "on"', "tenants[1].environments[1]: ")


def test_yaml_boolean_as_a_mapping_key(files):
    path = files.text(KIND_TEXT.replace('    gold:\n      quota: {cpu: "2"', '    yes:\n      quota: {cpu: "2"'))
    refused(path, "tiers: the key 'yes'", 'write it in quotes: "yes"')


def test_version_written_as_a_number(files):
    path = files.text(KIND_TEXT.replace('kubernetesVersion: "1.33"', "kubernetesVersion: 1.30"))
    refused(path, "platform.kubernetesVersion: ", 'write it in quotes: "1.30"')


def test_not_utf8(files):
    refused(files.text(KIND_TEXT.encode().replace(b"acme", b"ac\xe9me", 1)), "not UTF-8 text (byte 0xe9)")


def test_not_yaml(files):
    refused(files.text("config:\n  gpu-platform:tenants: [\n"), "not valid YAML")


def test_directory_missing_and_unreadable(tmp_path, monkeypatch):
    refused(tmp_path, "is a directory, not a stack file")
    refused(tmp_path / "Pulumi.nothing.yaml", "stack file not found")
    path = StackFiles(tmp_path).text(KIND_TEXT)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(type(path), "open", denied)
    refused(path, "cannot read the stack file: Permission denied")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a\n- b\n", "expected a mapping with a `config:` key"),
        ("config: [a, b]\n", "config: expected a mapping"),
        ("config: {}\nprojectt: x\n", "projectt: unknown top-level key"),
        ("config:\n  gpu-platform:tenants: {name: a}\n", "tenants: expected a list"),
        ("config:\n  gpu-platform:platform: [kind]\n", "platform: expected a mapping of keys, got a list"),
        ("config:\n  ? [a, b]\n  : c\n", "a mapping key must be a plain name"),
        ("config:\n  7: x\n", "the key 7 is not text"),
    ],
)
def test_shapes_that_are_not_a_stack(files, text, expected):
    refused(files.text(text), expected)


def test_too_many_tenants_and_too_large_files(files):
    tenants = "\n".join(f"    - {{name: t{i}, tier: bronze}}" for i in range(2001))
    refused(
        files.text(f"config:\n  gpu-platform:tenants:\n{tenants}\n"), "tenants: 2001 tenants; one stack holds at most"
    )
    refused(files.text("#" * (MAX_FILE_BYTES + 1)), f"larger than {MAX_FILE_BYTES // 2**20} MiB")


def test_a_file_of_countless_aliases_stops_early(files):
    text = "t: &t {name: a, tier: gold}\nconfig:\n  gpu-platform:tenants: [" + "*t," * 300_000 + "]\n"
    started = time.monotonic()
    refused(files.text(text), "values; a stack file needs far fewer")
    assert time.monotonic() - started < 60
