"""The HTTP side: the pure-ASGI middleware and its RED metrics, the in-process Prometheus
``/metrics`` (one worker or several), the error hooks and the health router."""
