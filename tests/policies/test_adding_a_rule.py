"""policies/README.md's "Adding a rule", done on a copy of the pack: one function in a rule module, nothing else.

The copy gets one new `@rule` function appended to an existing rule module and no other edit; a
fresh interpreter then imports the copy and must find the rule in the registry, in the CrossGuard
pack's policies, and in what the offline check (`evaluate`, which the preview runs) reports, with
the settings the framework resolved from the stack.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

NEW_RULE = """

@rule(name="no-tenant-named-forbidden", description="An example rule.", level="mandatory", severity="low")
def no_tenant_named_forbidden(resources, config):
    for namespace, tenant in config.tenants.items():
        if tenant == "forbidden":
            yield f"namespace {namespace}", f"tenant {tenant!r} may not exist ({config.max_tenant_share.describe()})"
"""

CHECK = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from policies.platform_rules import REGISTRY, evaluate
    from policies.platform_rules.pack import policies
    from tests.policies.conftest import capacity, fake_pool, tenant_namespace
    resources = [capacity(share="0.2"), *fake_pool(), *tenant_namespace("team-x", "forbidden")]
    print(json.dumps({
        "registry": [r.name for r in REGISTRY],
        "pack": [p.name for p in policies()],
        "violations": [v.as_dict() for v in evaluate(resources) if v.policy == "no-tenant-named-forbidden"],
        "module": __import__("policies.platform_rules").platform_rules.__file__,
    }))
    """
)


def test_a_new_rule_is_one_function_in_a_rule_module(tmp_path):
    copy = tmp_path / "pack"
    shutil.copytree(ROOT / "policies", copy / "policies", ignore=shutil.ignore_patterns("__pycache__"))
    module = copy / "policies" / "platform_rules" / "guardrails.py"
    module.write_text(module.read_text() + NEW_RULE)
    changed = [
        str(p.relative_to(copy))
        for p in sorted((copy / "policies").rglob("*"))
        if p.is_file() and p.read_bytes() != (ROOT / p.relative_to(copy)).read_bytes()
    ]
    assert changed == ["policies/platform_rules/guardrails.py"]

    done = subprocess.run(
        [sys.executable, "-c", CHECK, str(copy)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["module"].startswith(str(copy)), "the check must import the copy, not the repository's pack"
    assert "no-tenant-named-forbidden" in seen["registry"]
    assert "no-tenant-named-forbidden" in seen["pack"]
    [violation] = seen["violations"]
    assert violation["level"] == "mandatory"
    # The rule was handed the settings the framework resolved: the stack's record tightened the share to 0.2.
    assert "tenant 'forbidden' may not exist (maxTenantShare 0.2, set by" in violation["message"]
