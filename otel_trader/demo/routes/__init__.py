"""The demo trading API's routers, one module per group of endpoints, and what they share.

:func:`otel_trader.demo.api.create_app` builds one :class:`~otel_trader.demo.routes.context.ApiContext`
and includes, after the bot's and the health routers:

* :func:`~otel_trader.demo.routes.orders.orders_router`: ``POST /orders``, ``GET /orders/{order_id}``,
  ``GET /orders`` (rate limited);
* :func:`~otel_trader.demo.routes.positions.positions_router`: ``GET /positions``, ``GET /pnl``
  (rate limited);
* :func:`~otel_trader.demo.routes.prices.prices_router`: the ``/ws/prices`` WebSocket;
* :func:`~otel_trader.demo.routes.service.service_router`: ``GET /random_sleep``, ``GET /test-error``,
  ``GET /``.

The tables and the fill arithmetic are in :mod:`~otel_trader.demo.routes.storage`, the per-client
token bucket in :mod:`~otel_trader.demo.routes.limiter`.
"""
