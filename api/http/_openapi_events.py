"""The SSE payload schemas in the OpenAPI document (a streamed response names no model FastAPI could find)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic.json_schema import models_json_schema

from evoprune.api.http.event_schemas import SSE_PAYLOADS

EVENTS_PATH = "/experiments/{experiment_id}/events"
REF_TEMPLATE = "#/components/schemas/{model}"


def add_event_schemas(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the SSE payload models to an OpenAPI document and name them, per event, on the events route.

    Args:
        schema: the document FastAPI generated.

    Returns:
        The same document, changed in place: each payload model under components/schemas, and the events
        route's 200 response with `x-event-payloads` (event name → schema reference).

    """
    _, definitions = models_json_schema(
        [(model, "serialization") for model in SSE_PAYLOADS.values()], ref_template=REF_TEMPLATE
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, definition in definitions.get("$defs", {}).items():
        components.setdefault(name, definition)
    route = schema.get("paths", {}).get(EVENTS_PATH, {}).get("get")
    if route is not None:
        # an extension, not the response's schema: the body is text/event-stream, each message's data is one
        route["responses"]["200"]["x-event-payloads"] = {
            event: {"$ref": REF_TEMPLATE.format(model=model.__name__)}
            for event, model in SSE_PAYLOADS.items()
        }
    return schema


def with_event_schemas(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """An `app.openapi` that builds FastAPI's document once, with the SSE payload schemas added.

    Args:
        app: the application.

    Returns:
        The function to install as `app.openapi`.

    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_event_schemas(generate())
        return app.openapi_schema

    return openapi
