"""Zero-code set-up: ``opentelemetry-instrument uvicorn app:app`` configured by otel-trader.

``opentelemetry-instrument`` puts its ``sitecustomize`` on ``PYTHONPATH``; at interpreter
start-up, before the application module is imported, it runs (see
``opentelemetry/instrumentation/auto_instrumentation/__init__.py``):

1. the distro's ``configure()`` — ours switches telemetry on unless the environment says
   otherwise, and selects our configurator;
2. the configurator — ours calls :func:`otel_trader.configure` (providers, exporters, our
   httpx/SQLAlchemy/Redis/logging integrations) and arranges that the FastAPI app being served
   gets :func:`otel_trader.instrument_app` on its first ASGI call;
3. ``distro.load_instrumentor()`` for every installed ``opentelemetry_instrumentor`` entry
   point — ours skips the libraries otel-trader instruments itself, so nothing is instrumented
   twice, and loads every other one.

The rule: **typing ``opentelemetry-instrument`` means telemetry on**, unless
``TELEMETRY_ENABLED=false`` or ``OTEL_SDK_DISABLED=true`` says otherwise (environment or
``.env``). Plain ``uvicorn app:app`` with :func:`otel_trader.instrument_app` stays off until
``TELEMETRY_ENABLED=true``.

When ``opentelemetry-distro`` is installed too, the loader takes the first distro and the first
configurator in entry-point order, which differs between installations. Only our distro *and*
our configurator together give otel-trader's behaviour (ours sets ``OTEL_PYTHON_CONFIGURATOR``, so
with our distro first the configurator is always ours). In every other order the process says so
in one warning naming the fix, ``OTEL_PYTHON_DISTRO=otel_trader``: from our configurator when
another distro ran first, or from our instrumentor entry point (loaded later by the same loader)
when another configurator ran instead of ours. Nothing here may stop the application: failures
become a logged warning.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any

from opentelemetry.instrumentation.dependencies import DependencyConflictError
from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]  # module is "type: ignore"d
from opentelemetry.sdk._configuration import _BaseConfigurator

__all__ = [
    "OWNED_INSTRUMENTATIONS",
    "OtelTraderConfigurator",
    "OtelTraderDistro",
    "OtelTraderInstrumentor",
    "auto_instrument_fastapi",
]

logger = logging.getLogger("otel_trader")

#: Contrib instrumentor entry points whose job otel-trader does itself (the FastAPI middleware
#: replaces fastapi/asgi/starlette; the others are ``otel_trader.integrations`` and ``logs``).
OWNED_INSTRUMENTATIONS = frozenset(
    {"fastapi", "asgi", "starlette", "httpx", "sqlalchemy", "redis", "aiohttp-client", "requests", "logging"}
)

#: None until our configurator ran; then whether telemetry is active in this process.
_configured_active: bool | None = None
#: Whether the loader picked our distro (rather than another installed one).
_our_distro_ran = False
_fastapi_patched = False


class OtelTraderDistro(BaseDistro):  # type: ignore[misc]
    """The ``opentelemetry_distro`` entry point: defaults, and which instrumentors to load."""

    def _configure(self, **kwargs: Any) -> None:
        global _our_distro_ran
        _our_distro_ran = True
        # "On unless said otherwise" is applied by our configurator, not by setting
        # TELEMETRY_ENABLED here: a variable set here would outrank a `.env` that says false.
        # The loader takes the first configurator it finds unless told; with
        # opentelemetry-distro installed that could be the SDK's, configuring a second pipeline.
        os.environ.setdefault("OTEL_PYTHON_CONFIGURATOR", "otel_trader")

    def load_instrumentor(self, entry_point: Any, **kwargs: Any) -> None:
        """Load a contrib instrumentor unless otel-trader covers its library or telemetry is off."""
        if entry_point.name in OWNED_INSTRUMENTATIONS:
            logger.debug("otel-trader: %s is instrumented by otel-trader itself", entry_point.name)
            return
        if _configured_active is False:
            # Telemetry is off (or failed to configure): patching libraries would only cost time.
            return
        try:
            super().load_instrumentor(entry_point, **kwargs)
        except (ImportError, DependencyConflictError):
            raise  # the loader skips libraries that are absent or of an unsupported version
        except Exception as exc:
            logger.warning("otel-trader: instrumentation %r failed and is skipped: %s", entry_point.name, exc)


class OtelTraderConfigurator(_BaseConfigurator):  # type: ignore[misc]
    """The ``opentelemetry_configurator`` entry point: ``otel_trader.configure()`` from the environment."""

    def _configure(self, **kwargs: Any) -> None:
        global _configured_active
        if not _our_distro_ran:
            _warn_other_distribution("distro")
        try:
            from otel_trader.sdk.manager import configure
            from otel_trader.settings import TelemetryConfig

            # The rule holds whichever distro ran before us (only ours sets the variable).
            manager = configure(None if _enabled_is_set() else TelemetryConfig(enabled=True))
        except Exception as exc:  # a ConfigError names the variable; the app runs without telemetry
            _configured_active = False
            logger.warning("otel-trader: telemetry is off, configuration failed: %s", exc)
            return
        _configured_active = bool(manager)
        if manager:
            auto_instrument_fastapi()


def _enabled_is_set() -> bool:
    """Whether TELEMETRY_ENABLED is given, in the environment or the settings' dotenv file."""
    if os.environ.get("TELEMETRY_ENABLED", "").strip():
        return True
    from otel_trader.settings import _dotenv_values

    return bool((_dotenv_values().get("TELEMETRY_ENABLED") or "").strip())


def _warn_other_distribution(which: str) -> None:
    logger.warning(
        "otel-trader: opentelemetry-instrument loaded another distribution's %s before "
        "otel-trader's (opentelemetry-distro is installed too): libraries may be instrumented "
        "twice or by a pipeline otel-trader did not build. Set OTEL_PYTHON_DISTRO=otel_trader, "
        "or uninstall opentelemetry-distro",
        which,
    )


class OtelTraderInstrumentor:
    """The ``opentelemetry_instrumentor`` entry point: a check, not an instrumentation.

    The loader loads instrumentors after the distro and configurator it picked. If that
    configurator was not ours (another distro's came first in entry-point order), telemetry runs
    on a pipeline otel-trader did not build; say so once, with the fix.
    """

    def instrument(self, **kwargs: Any) -> None:
        """Warn when otel-trader's configurator did not run in this process."""
        if _configured_active is None:
            _warn_other_distribution("configurator")

    def uninstrument(self, **kwargs: Any) -> None:
        """Nothing to undo."""


def auto_instrument_fastapi() -> bool:
    """Make each FastAPI app call :func:`otel_trader.instrument_app` on its first ASGI call.

    Patched once, on ``FastAPI.__call__`` rather than ``__init__``: at the first call (uvicorn's
    lifespan start-up, or the first request) the application has added its own middleware, so
    ours ends up outermost and times the whole request, as with an explicit ``instrument_app``
    after app creation; and a FastAPI app mounted inside an instrumented one can be recognised
    (the parent is ``scope["app"]``) and left alone, so a request is not counted twice.
    Returns False when FastAPI is not installed.
    """
    global _fastapi_patched
    if _fastapi_patched:
        return True
    try:
        from fastapi import FastAPI
    except ImportError:
        return False
    original = FastAPI.__call__

    @functools.wraps(original)
    async def __call__(self: Any, scope: Any, receive: Any, send: Any) -> None:
        if "_otel_trader_auto" not in self.__dict__:
            self._otel_trader_auto = True  # decided once per app
            parent = scope.get("app")
            if not getattr(parent, "_otel_trader_instrumented", False):
                _instrument(self)
        await original(self, scope, receive, send)

    FastAPI.__call__ = __call__  # type: ignore[method-assign]
    _fastapi_patched = True
    return True


def _instrument(app: Any) -> None:
    try:
        from otel_trader.sdk.manager import instrument_app

        instrument_app(app)
    except Exception as exc:
        logger.warning("otel-trader: could not instrument %r, serving it without telemetry: %s", app, exc)
