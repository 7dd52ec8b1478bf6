"""Who the reports speak for: the service, its environment, and the SigNoz UI that links traces.

The reporter's own settings win (its arguments, else ``SERVICE_NAME``, ``ENVIRONMENT``,
``SIGNOZ_URL``…); what they leave unset comes from the telemetry configuration the reporter is
given (``install(manager)`` passes the manager's), then from the defaults the telemetry settings
use. The reporter does not look the telemetry up by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from otel_trader.settings import TelemetryConfig
    from otel_trader.telegram.settings import TelegramSettings

__all__ = ["ServiceIdentity"]


@dataclass(frozen=True)
class ServiceIdentity:
    """Service name, environment and SigNoz URL shown in (and linked from) every report."""

    service_name: str
    environment: str
    signoz_url: str | None = None

    @classmethod
    def resolve(cls, settings: TelegramSettings, telemetry: TelemetryConfig | None = None) -> ServiceIdentity:
        """``settings``' values where set, else ``telemetry``'s, else the telemetry defaults."""
        return cls(
            service_name=settings.service_name
            or (telemetry.service_name if telemetry else None)
            or "unknown_service:python",
            environment=settings.environment
            or (telemetry.environment if telemetry else None)
            or "development",
            signoz_url=settings.signoz_url or (telemetry.signoz_url if telemetry else None),
        )
