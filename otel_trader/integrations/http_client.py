"""What the aiohttp and requests integrations share: span names, URL templates, propagation policy.

* **Span names** are ``{method} {url.template}`` (``POST /api/v3/order``), never the raw path.
  The template is exact when a ccxt call is in progress (ccxt's own endpoint template, e.g.
  ``/api/v3/brokerage/products/{product_id}/ticker``); otherwise it is derived from the path:
  segments that look like ids (numbers, UUIDs, hex, long tokens, Telegram bot tokens) become
  ``{id}``, so ``/orders/8231/fills`` and ``/orders/8232/fills`` share one name.
* **URLs** on spans (``url.full``) go through :func:`otel_trader.redaction.redact_url` in the
  process: ``signature``, ``api_key``, ``AccessKeyId``… query values are ``REDACTED``.
* **W3C context** (``traceparent``, ``tracestate``, ``baggage``) is sent only to hosts that are
  ours: loopback, private and link-local addresses, ``localhost``, single-label names (compose
  services), ``*.local``, ``*.internal``, ``*.svc``, ``*.cluster.local`` and the hosts listed in
  ``TELEMETRY_PROPAGATE_HOSTS``. Exchanges and other third parties get no trace headers.

The contrib instrumentations inject context unconditionally right after calling our request
hook; the hook marks the carrier of a call to a foreign host and :class:`GatedPropagator`, put
in front of the global propagator, leaves that one carrier alone.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import propagate
from opentelemetry.propagators.textmap import CarrierT, Setter, TextMapPropagator, default_setter

from otel_trader.integrations.on_import import when_imported
from otel_trader.redaction import redact_url

__all__ = [
    "GatedPropagator",
    "SharedMeterProvider",
    "PropagationPolicy",
    "endpoint_template",
    "install_propagation_gate",
    "name_client_span",
    "path_template",
    "skip_propagation",
]

#: The endpoint a ccxt call is requesting: (path as sent, path template), set by the ccxt
#: integration around ``fetch2`` so the HTTP span below it can name the exact template.
endpoint_template: ContextVar[tuple[str, str] | None] = ContextVar("otel_trader_endpoint", default=None)

_MAX_TEMPLATE = 160
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
_HEX = re.compile(r"^(?=.*\d)[0-9a-fA-F]{12,}$")
_BOT_SEGMENT = re.compile(r"^bot\d+(?::|%3[Aa]).+$")


def _variable(segment: str) -> bool:
    """Whether a path segment is an identifier (an order id, a listen key) rather than a name."""
    if not segment:
        return False
    if segment.isdigit() or len(segment) >= 24:
        return True
    if _UUID.match(segment) or _HEX.match(segment):
        return True
    if ":" in segment or "%3" in segment:
        return True  # bot<id>:<token>, urn-like ids
    digits = sum(c.isdigit() for c in segment)
    # Mixed ids such as "a1b2c3d4e5" or "ord_2024_000123": several digits in a longer segment.
    return len(segment) >= 8 and digits >= 4


@functools.lru_cache(maxsize=4096)
def path_template(path: str) -> str:
    """``/orders/8231/fills`` → ``/orders/{id}/fills``; ``/bot123:AA…/sendMessage`` → ``/bot{token}/sendMessage``.

    Segments that look like identifiers become ``{id}``; names (``/api/v3/order``, symbols such
    as ``BTC-USDT``) are kept. At most 160 characters (longer ones end in ``/…``).
    """
    out = []
    for segment in path.split("/"):
        if _BOT_SEGMENT.match(segment):
            out.append("bot{token}")
        elif _variable(segment):
            out.append("{id}")
        else:
            out.append(segment)
    template = "/".join(out) or "/"
    if len(template) > _MAX_TEMPLATE:
        template = template[: _MAX_TEMPLATE - 2].rsplit("/", 1)[0] + "/…"
    return template


def _template_for(path: str) -> str:
    endpoint = endpoint_template.get()
    if endpoint is not None:
        sent, template = endpoint
        if sent == template:
            # A ccxt endpoint without placeholders: the path is already a template.
            return path if len(path) <= _MAX_TEMPLATE else path_template(path)
        if path.endswith(sent):
            return path[: len(path) - len(sent)] + template
    return path_template(path)


def name_client_span(span: Any, method: str, url: str) -> None:
    """Rename an HTTP client span to ``{method} {url.template}`` and scrub its URL attributes."""
    if not span.is_recording():
        return
    try:
        parts = urlsplit(url)
    except ValueError:
        return
    template = _template_for(parts.path or "/")
    method = method.upper()
    span.update_name(f"{method if method.isalpha() and len(method) <= 10 else 'HTTP'} {template}")
    span.set_attribute("url.template", template)
    clean = redact_url(url)
    attributes = getattr(span, "attributes", None) or {}
    for key in ("url.full", "http.url"):  # stable and old semantic conventions
        if key in attributes:
            span.set_attribute(key, clean)


# -- where W3C context goes --------------------------------------------------------------------

_INTERNAL_SUFFIXES = (".local", ".localhost", ".internal", ".svc", ".cluster.local", ".lan", ".home.arpa")


class PropagationPolicy:
    """Which hosts receive trace context: ours (see the module docstring) plus ``extra`` patterns.

    A pattern is a host name (``api.desk.example``), ``*.suffix`` (``*.desk.example``), an IP
    address, or ``*`` for every host.
    """

    def __init__(self, extra: Iterable[str] = ()) -> None:
        self.everywhere = False
        self.hosts: set[str] = set()
        self.suffixes: list[str] = []
        for raw in extra:
            pattern = raw.strip().lower().rstrip(".")
            if not pattern:
                continue
            if pattern == "*":
                self.everywhere = True
            elif pattern.startswith("*."):
                self.suffixes.append(pattern[1:])
            else:
                self.hosts.add(pattern.strip("[]"))
        self._decided: dict[str, bool] = {}

    def allows(self, host: str | None) -> bool:
        """Whether a request to ``host`` may carry ``traceparent``/``tracestate``/``baggage``."""
        if self.everywhere:
            return True
        if not host:
            return False
        decided = self._decided.get(host)
        if decided is None:
            decided = self._decide(host.lower().rstrip(".").strip("[]"))
            if len(self._decided) >= 1024:
                self._decided.clear()
            self._decided[host] = decided
        return decided

    def _decide(self, host: str) -> bool:
        if host in self.hosts or any(host.endswith(s) for s in self.suffixes):
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return host == "localhost" or "." not in host or host.endswith(_INTERNAL_SUFFIXES)
        return address.is_loopback or address.is_private or address.is_link_local


#: The carrier of the call being made that must not get trace context (a foreign host).
_skipped_carrier: ContextVar[Any] = ContextVar("otel_trader_skip_propagation", default=None)


def skip_propagation(carrier: Any) -> None:
    """Leave ``carrier`` (the headers of the request being sent) without trace context."""
    _skipped_carrier.set(carrier)


class GatedPropagator(TextMapPropagator):
    """The global propagator, except for a carrier marked by :func:`skip_propagation`."""

    def __init__(self, inner: TextMapPropagator) -> None:
        self.inner = inner

    def extract(self, carrier: CarrierT, context: Any = None, getter: Any = None) -> Any:
        """Delegate to the wrapped propagator (incoming context is never gated)."""
        if getter is None:
            return self.inner.extract(carrier, context)
        return self.inner.extract(carrier, context, getter)

    def inject(
        self, carrier: CarrierT, context: Any = None, setter: Setter[CarrierT] = default_setter
    ) -> None:
        """Inject through the wrapped propagator unless ``carrier`` was marked as foreign."""
        skipped = _skipped_carrier.get()
        if skipped is not None and skipped is carrier:
            _skipped_carrier.set(None)
            return
        self.inner.inject(carrier, context, setter)

    @property
    def fields(self) -> set[str]:
        """The header names the wrapped propagator sets."""
        return self.inner.fields


_gate_users = 0


def install_propagation_gate() -> Any:
    """Put :class:`GatedPropagator` in front of the global propagator; returns the undo function."""
    global _gate_users
    current = propagate.get_global_textmap()
    if not isinstance(current, GatedPropagator):
        propagate.set_global_textmap(GatedPropagator(current))
    _gate_users += 1

    def undo() -> None:
        global _gate_users
        _gate_users -= 1
        textmap = propagate.get_global_textmap()
        if _gate_users <= 0 and isinstance(textmap, GatedPropagator):
            propagate.set_global_textmap(textmap.inner)

    return undo


def policy_from(config: Any) -> PropagationPolicy:
    """The propagation policy of a :class:`~otel_trader.settings.TelemetryConfig`."""
    return PropagationPolicy(getattr(config, "propagate_hosts", ()) or ())


# -- one metric scope for both clients -----------------------------------------------------------


class _SharedMeter:
    """A meter whose instruments are made once per (kind, name) and shared by every caller."""

    def __init__(self, meter: Any) -> None:
        self._meter = meter
        self._made: dict[tuple[str, str], Any] = {}

    def __getattr__(self, kind: str) -> Any:
        create = getattr(self._meter, kind)
        if not kind.startswith("create_"):
            return create

        def shared(name: str, *args: Any, **kwargs: Any) -> Any:
            key = (kind, name)
            if key not in self._made:
                self._made[key] = create(name, *args, **kwargs)
            return self._made[key]

        return shared


class SharedMeterProvider:
    """Gives the aiohttp and requests instrumentations one meter (scope ``otel_trader.http_client``).

    Both record ``http.client.request.duration`` with different attribute keys (requests adds
    ``network.protocol.version``). Under two scopes the Prometheus exporter (0.66b1) merges
    them into one family labelled with the first scope's keys and shifts the second's values
    under wrong labels; one shared instrument keeps every series' labels right.
    """

    def __init__(self, meter_provider: Any) -> None:
        from opentelemetry.metrics import get_meter_provider

        provider = meter_provider if meter_provider is not None else get_meter_provider()
        self._meter = _SharedMeter(provider.get_meter("otel_trader.http_client"))

    def get_meter(self, *args: Any, **kwargs: Any) -> Any:
        """The shared meter, whatever scope the instrumentation asks for."""
        return self._meter


_shared_meters: dict[int, SharedMeterProvider] = {}


def shared_meter_provider(meter_provider: Any) -> SharedMeterProvider:
    """The :class:`SharedMeterProvider` of ``meter_provider`` (one per provider)."""
    key = id(meter_provider)
    shared = _shared_meters.get(key)
    if shared is None or len(_shared_meters) > 8:
        _shared_meters.clear()
        shared = _shared_meters[key] = SharedMeterProvider(meter_provider)
    return shared


def instrument_when_imported(
    module: str,
    make_instrumentor: Callable[[], Any],
    request_hook: Callable[[PropagationPolicy], Callable[[Any, Any], None]],
    tracer_provider: Any,
    meter_provider: Any,
    config: Any,
) -> Callable[[], None]:
    """Instrument an HTTP client library with a contrib instrumentor once ``module`` is imported.

    The instrumentor gets our request hook (span name, scrubbed URL, propagation gate) and the
    meter provider shared by all HTTP clients. Returns the undo function (also cancels the wait).
    """
    policy = policy_from(config)
    undo: list[Callable[[], None]] = []

    def on_import(_module: Any) -> None:
        instrumentor = make_instrumentor()
        instrumentor.instrument(
            tracer_provider=tracer_provider,
            meter_provider=shared_meter_provider(meter_provider),
            request_hook=request_hook(policy),
        )
        undo.append(install_propagation_gate())
        undo.append(instrumentor.uninstrument)

    cancel = when_imported(module, on_import)

    def uninstrument() -> None:
        cancel()
        while undo:
            undo.pop()()

    return uninstrument
