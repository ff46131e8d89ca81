"""Entry point of the Pulumi program (`main: infra/` in Pulumi.yaml)."""

import sys
from pathlib import Path

# Pulumi runs this file as a script; the project root holds the `infra` and `components` packages.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infra.program import main  # noqa: E402

main()
