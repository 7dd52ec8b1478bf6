"""The process's Resource: service, environment, host and process attributes, and a forked child's own identity."""

from __future__ import annotations

import logging
import os
import platform
import socket
import uuid
from collections.abc import Iterable
from typing import Any

from opentelemetry.sdk.resources import Resource

from otel_trader.settings import TelemetryConfig

__all__ = ["build_resource", "process_instance_id", "refresh_after_fork"]

logger = logging.getLogger("otel_trader")


def build_resource(config: TelemetryConfig) -> Resource:
    """service.*, deployment.environment, host and process attributes, plus OTEL_RESOURCE_ATTRIBUTES."""
    from opentelemetry.sdk.resources import Resource

    attributes: dict[str, Any] = {
        "service.name": config.service_name,
        "service.instance.id": str(uuid.uuid4()),
        # Both spellings: SigNoz and older collectors read the first, semconv ≥ 1.27 the second.
        "deployment.environment": config.environment,
        "deployment.environment.name": config.environment,
        "host.name": socket.gethostname(),
        "process.pid": os.getpid(),
        "process.runtime.name": platform.python_implementation().lower(),
        "process.runtime.version": platform.python_version(),
        "telemetry.distro.name": "otel-trader",
    }
    if config.service_version:
        attributes["service.version"] = config.service_version
    attributes.update(config.resource_attributes)
    # Resource.create would also merge the environment's OTEL_RESOURCE_ATTRIBUTES and
    # OTEL_SERVICE_NAME, overriding our precedence; build it directly instead.
    return Resource(attributes)


def process_instance_id() -> str:
    """The SDK's per-process service.instance.id (what its providers use after a fork), else a new UUID."""
    try:
        from opentelemetry.sdk.resources import ServiceInstanceIdResourceDetector

        return str(ServiceInstanceIdResourceDetector().detect().attributes["service.instance.id"])
    except Exception:  # SDK without the detector
        return str(uuid.uuid4())


def refresh_after_fork(resource: Resource, providers: Iterable[Any]) -> None:
    """Give a forked worker its own ``service.instance.id`` and ``process.pid``.

    SDK >= 1.45 providers refresh service.instance.id themselves after fork (a per-process id,
    merged into a *new* Resource object per provider) but not process.pid, and no longer see the
    object built here; older SDKs keep that object. So the object is updated in place (Resource
    has no public setter) and the same attributes are merged into each provider.
    """
    from opentelemetry.attributes import BoundedAttributes

    fresh: dict[str, Any] = {"service.instance.id": process_instance_id(), "process.pid": os.getpid()}
    resource._attributes = BoundedAttributes(attributes={**resource.attributes, **fresh}, immutable=True)
    for provider in providers:
        update = getattr(provider, "_update_resource", None)
        if update is not None:
            try:
                update(Resource(fresh))
            except Exception:  # never break the child over an attribute
                logger.debug("resource update after fork failed", exc_info=True)
