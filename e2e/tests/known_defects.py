"""Program defects the e2e tier has found and the lead has not fixed yet (issue 11), as
(stack, test) -> reason. Each is a strict xfail: remove the entry when the fix lands."""

from __future__ import annotations

KNOWN_DEFECTS: dict[tuple[str, str], str] = {}
