"""The OpenTelemetry SDK set-up: the manager and its singleton, resource, sampler and limits,
exporters and the span queue, log export, runtime metrics, scrubbing, the exit budget, the
state reset after a fork, and the span and metric helpers.

Nothing here knows about HTTP frameworks; :mod:`otel_trader.web` and
:mod:`otel_trader.integrations` build on it.
"""
