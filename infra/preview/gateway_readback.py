"""The gateway document the preview rendered, read back by the gateway's own parser.

The stack's checks already run the parser over a document built with placeholder hashes and
URLs (infra/config/consistency.py); this reads the one the program actually wrote into the
gateway's Secret, so a program change the gateway does not understand fails the preview too.
"""

from __future__ import annotations

import json

from pydantic import ValidationError

from infra.config import StackConfig
from infra.preview.capture import SECRET_SIG, Capture


def rendered_documents(capture: Capture) -> list[str]:
    from components.gateway import CONFIG_FILE

    documents = []
    for resource in capture.objects("Secret"):
        data = resource.inputs.get("stringData")
        if isinstance(data, dict) and SECRET_SIG in data:
            data = data.get("value")
        if isinstance(data, dict) and isinstance(data.get(CONFIG_FILE), str):
            documents.append(data[CONFIG_FILE])
    return documents


def problems(capture: Capture, config: StackConfig) -> list[str]:
    """`tenants[i]: …` for every tenant whose entry the gateway would refuse."""
    from services.gateway import config as gateway

    index_of = {tenant.name: index for index, tenant in enumerate(config.tenants)}
    found = []
    for text in rendered_documents(capture):
        try:
            tenants = json.loads(text)["tenants"]
        except (ValueError, KeyError, TypeError) as exc:
            found.append(f"gateway: the rendered gateway document is not one the gateway reads ({exc})")
            continue
        for name, entry in tenants.items():
            where = f"tenants[{index_of[name]}]" if name in index_of else f"tenant {name!r}"
            try:
                gateway.validate(gateway.Document.model_validate({"tenants": {name: entry}}))
            except ValidationError as exc:
                first = exc.errors()[0]
                loc = ".".join(str(part) for part in first["loc"][2:])
                found.append(
                    f"{where}: the gateway would refuse the configuration of tenant {name!r} ({loc}: {first['msg']})"
                )
            except gateway.DocumentError as exc:
                found.append(f"{where}: the gateway would refuse the configuration of tenant {name!r} ({exc})")
    return found
