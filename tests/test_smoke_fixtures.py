import otel_trader


def test_trace_operation_creates_child_span(telemetry):
    with otel_trader.trace_operation("outer"), otel_trader.trace_operation("inner", {"k": 1}):
        otel_trader.add_span_attribute("x", "y")
    spans = {s.name: s for s in telemetry.finished_spans()}
    assert spans["inner"].parent.span_id == spans["outer"].context.span_id
    assert spans["inner"].attributes["x"] == "y"


def test_real_redis_and_postgres(redis_server, postgres_url):
    import redis
    import sqlalchemy

    assert redis.Redis.from_url(redis_server.url).ping()
    with sqlalchemy.create_engine(postgres_url).connect() as conn:
        assert conn.execute(sqlalchemy.text("select 41 + 1")).scalar() == 42
