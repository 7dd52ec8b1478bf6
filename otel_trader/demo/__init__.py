"""The otel-trader demo: a trading API and a mock exchange, instrumented, under load.

``python -m otel_trader.demo`` (or ``otel-trader demo``) starts the collector when it is
built, the two services, drives a load and prints what the metrics say; see
:mod:`otel_trader.demo.runner`. The apps themselves: :mod:`otel_trader.demo.api` and
:mod:`otel_trader.demo.exchange`.
"""

#: ``service.name`` of the two demo services (the ``job`` label on the collector's :8889).
#: The API is ``trader-api``, the job name monitoring/prometheus/prometheus.yml and the
#: dashboards and alerts use, so the demo's data shows up in them unchanged.
API_SERVICE = "trader-api"
EXCHANGE_SERVICE = "mock-exchange"
