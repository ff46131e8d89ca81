"""Offline preview at scale: synthetic stacks of many tenants, wall time and peak memory.

Each size runs `platformctl preview` in a fresh process (so peak RSS is that run's own),
on one generated stack file. Target (issue 2): 200 tenants in under 20 s on a 2-core machine,
time growing no worse than linearly.

    .venv/bin/python bench/preview_scale.py [--sizes 50 200 800] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TIERS = ["gold", "silver", "bronze"]


def synthetic_stack(tenants: int) -> dict:
    # Capacity grows with the tenant count so that every tenant stays under the 30% cap.
    return {
        "config": {
            "gpu-platform:platform": {
                "flavour": "kind",
                "capacity": {"cpu": str(16 * tenants), "memory": f"{64 * tenants}Gi", "nvidia.com/gpu": 2 * tenants},
                "overSubscriptionRatio": 2.0,
            },
            # One 8-GPU node per four tenants, so the GPU capacity is 2 per tenant.
            "gpu-platform:gpuPool": {
                "nodes": [f"gpu-node-{n}" for n in range(tenants // 4)],
                "fake": {"gpusPerNode": 8},
            },
            "gpu-platform:tenants": [
                {
                    "name": f"tenant-{i:04d}",
                    "tier": TIERS[i % 3],
                    "environments": ["dev", "prod"] if i % 4 == 0 else ["prod"],
                    "groups": {"user": [f"team-{i}"]},
                }
                for i in range(tenants)
            ],
        }
    }


def run_once(tenants: int, work: Path) -> dict:
    stack_file = work / f"Pulumi.scale-{tenants}.yaml"
    stack_file.write_text(yaml.safe_dump(synthetic_stack(tenants)))
    out = work / f"out-{tenants}"
    cmd = [
        str(ROOT / ".venv/bin/platformctl"),
        "preview",
        "--stack",
        f"scale-{tenants}",
        "--stack-file",
        str(stack_file),
        "--out",
        str(out),
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        sys.exit(
            f"preview of {tenants} tenants failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    report = json.loads((out / "report.json").read_text())
    return {
        "tenants": tenants,
        "resources": report["resources"]["total"],
        "manifests": report["schema"]["validated"],
        "wall_s": round(wall, 2),
        # ru_maxrss of children is the largest child so far; sizes run in increasing order.
        "peak_rss_mib": round(max(peak_kib, before) / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 800])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    print(
        f"machine: {platform.node()} {os.cpu_count()} cpus, {platform.processor() or platform.machine()}, Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for size in sorted(args.sizes):
            best = min((run_once(size, Path(tmp)) for _ in range(args.repeat)), key=lambda r: r["wall_s"])
            rows.append(best)
            print(json.dumps(best))
        base = rows[0]
        for row in rows[1:]:
            growth = (row["wall_s"] / base["wall_s"]) / (row["tenants"] / base["tenants"])
            print(
                f"{row['tenants']} vs {base['tenants']} tenants: time per tenant x{growth:.2f} (<= 1.0 is linear or better)"
            )


if __name__ == "__main__":
    main()
