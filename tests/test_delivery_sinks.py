"""Sinks: the webhook sink's queueing through `BatchTransaction` (on both stores), what its
sends come to, its secrets, and sink kinds registered by plugins (`register_sinks`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from delivery_env import (
    ENGINE_STORES,
    SECRET,
    STORES,
    Env,
    close_postgres_stores,  # noqa: F401 - an autouse fixture
    engine_store,
    entry,
    hook,
    source,
)

from logd import Status, redact
from logd.config.settings import load_settings
from logd.delivery.signing import verify
from logd.delivery.sinks import Sent, SinkKind
from logd.delivery.sinks.webhook import WebhookSink, send_test
from logd.delivery.wiring import wire_deliveries
from logd.errors import PluginError
from logd.plugin.hookspecs import hookimpl
from logd.plugin.manager import Registry, register_module
from logd.plugin.testing import write_config
from logd.store.interface import BatchResult, BatchTransaction, Delivery, NewDelivery
from logd.store.memory import MemoryStore


@pytest.fixture(params=STORES)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def bodies(env: Env) -> list[dict[str, Any]]:
    return [json.loads(d.body) for d in env.rows()]


# -- queueing, through the batch transaction ----------------------------------------------


def test_new_failures_queue_one_delivery_in_the_query_shape_and_a_refetch_none(
    kind: str, tmp_path: Path
) -> None:
    env = Env(kind, tmp_path, hook("https://hooks.example/a"))
    batch = [entry("1"), entry("2", error="timeout"), entry("3", Status.SUCCESS)]
    env.commit(*batch)
    [row] = env.rows()
    body = json.loads(row.body)
    assert (body["delivery_id"], body["webhook"], body["source"], body["count"]) == (
        row.delivery_id,
        "ops",
        "fleet",
        2,
    )
    assert (row.sink, row.source, row.provider, row.count) == ("ops", "fleet", "fleetit", 2)
    assert body["entries"] == [env.store.get(f"fleet:{n}").as_dict() for n in ("1", "2")]
    env.commit(*batch)  # a re-fetch: nothing new failed
    env.commit(entry("1", message="edited"))  # changed, but failed before too
    assert len(env.rows()) == 1


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        ("timeout OR refused", ["1", "2", "4"]),
        ("error:timeout", ["1"]),
        ("time*", ["1", "4"]),
        ('"ORD-123"', ["5"]),
        ("refused NOT peer", []),
        ("message:(connection AND peer)", ["2"]),
    ],
)
def test_match_is_asked_of_the_store_as_query_asks_it(
    kind: str, tmp_path: Path, match: str, expected: list[str]
) -> None:
    env = Env(kind, tmp_path, hook("https://hooks.example/a", match=match))
    env.commit(
        entry("1", error="Gateway timeout"),
        entry("2", message="connection refused by peer"),
        entry("3", error="invalid plate"),
        entry("4", raw={"detail": "upstream timeout"}),  # raw's values are searchable
        entry("5", message="order ORD-123 failed"),
    )
    got = sorted(e["native_id"] for b in bodies(env) for e in b["entries"])
    assert got == expected


def test_backfill_max_age_and_sources(kind: str, tmp_path: Path) -> None:
    env = Env(
        kind,
        tmp_path,
        hook("https://hooks.example/a", max_age="1d", sources=["fleet"]),
        hook("https://hooks.example/b", name="history", alert_backfill=True),
    )
    result = BatchResult(backfill=True)
    assert result.backfill
    env.store.commit_batch(
        "fleet", [entry("b1")], None, hooks=env.deliveries.hooks, backfill=True, provider="fleetit"
    )
    assert [d.sink for d in env.rows()] == ["history"]  # a first poll's failures are history
    env.commit(entry("old", ago=timedelta(days=2)), entry("new"))
    env.commit(entry("x"), src="other")
    sent = {
        (b["webhook"], b["source"]): [e["native_id"] for e in b["entries"]] for b in bodies(env)
    }
    assert sent == {
        ("history", "fleet"): ["old", "new"],
        ("ops", "fleet"): ["new"],
        ("history", "other"): ["x"],
    }


def test_deliveries_roll_back_with_their_batch(kind: str, tmp_path: Path) -> None:
    env = Env(kind, tmp_path, hook("https://hooks.example/a"))

    def crash(*args: Any) -> None:
        raise RuntimeError("killed mid-batch")

    with pytest.raises(RuntimeError):
        env.commit(entry("1"), hooks=[crash])
    assert env.store.get("fleet:1") is None and env.rows() == []
    env.commit(entry("1"))  # found new again by the next poll: still alerted
    assert len(env.rows()) == 1


# -- what a send comes to -------------------------------------------------------------------


def _delivery(body: bytes = b'{"a":1}') -> Delivery:
    stamp = "2026-01-01T00:00:00.000000+00:00"
    return Delivery("dlv_1", "ops", "fleet", "fleetit", 1, body, "pending", 0, stamp, None,
                    None, stamp, stamp)  # fmt: skip


def _sink(
    tmp_path: Path, handler: Callable[[httpx.Request], httpx.Response], **kw: Any
) -> WebhookSink:
    config = write_config(tmp_path, [source("fleet")], webhooks=[hook("https://h.example/a", **kw)])
    [webhook] = load_settings(config).webhooks
    return WebhookSink(webhook, transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("answer", "result"),
    [
        (httpx.Response(204), Sent("delivered", 204)),
        (httpx.Response(408), Sent("retry", 408, "HTTP 408: Request Timeout")),
        (
            httpx.Response(429, headers={"Retry-After": "120"}, text="slow down"),
            Sent("retry", 429, "HTTP 429: slow down", 120.0),
        ),
        (httpx.Response(502, text="bad gateway"), Sent("retry", 502, "HTTP 502: bad gateway")),
        (httpx.Response(410, text="gone"), Sent("rejected", 410, "HTTP 410: gone")),
    ],
)
def test_what_a_webhook_send_comes_to(tmp_path: Path, answer: httpx.Response, result: Sent) -> None:
    sink = _sink(tmp_path, lambda request: answer)
    assert sink.send(_delivery()) == result


def test_a_redirect_is_rejected_not_followed_and_a_network_error_retried(tmp_path: Path) -> None:
    moved = _sink(
        tmp_path,
        lambda r: httpx.Response(301, headers={"Location": "/b?token=zz9token0123456789abcd"}),
    )
    sent = moved.send(_delivery())
    assert (sent.result, sent.status) == ("rejected", 301)
    assert "not followed" in (sent.error or "") and "zz9token" not in (sent.error or "")

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    sent = _sink(tmp_path, down).send(_delivery())
    assert (sent.result, sent.status) == ("retry", None) and "ConnectError" in (sent.error or "")


def test_each_send_is_signed_and_its_secrets_are_registered_for_masking(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []
    token = "hdr-token-1234567890abcdef"

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    sink = _sink(tmp_path, handler, headers={"Authorization": f"Bearer {token}"})
    sink.send(_delivery(b'{"x":"y"}'))
    [request] = seen
    assert verify(
        "fleetit",
        SECRET,
        request.content,
        request.headers["x-timestamp"],
        request.headers["x-signature"],
    )
    assert request.headers["x-logd-delivery"] == "dlv_1"
    assert {token, SECRET} <= set(redact.registered())  # masked in every log line
    assert SECRET not in repr(sink) and token not in repr(sink)


def test_send_test_sends_a_signed_sample_not_queued(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202)

    config = write_config(tmp_path, [source("fleet")], webhooks=[hook("https://h.example/a")])
    [webhook] = load_settings(config).webhooks
    delivery_id, sent = send_test(webhook, transport=httpx.MockTransport(handler))
    assert sent == Sent("delivered", 202)
    body = json.loads(seen[0].content)
    assert body["delivery_id"] == delivery_id and body["entries"][0]["source"] == "logd-test"


# -- sink kinds from plugins --------------------------------------------------------------


def test_the_webhook_kind_is_registered_by_the_default_plugin() -> None:
    kinds = Registry().sink_kinds()
    assert list(kinds) == ["webhook", "otlp"]
    assert kinds["webhook"].batch_hook is not None


@dataclass(frozen=True)
class AuditConfig:
    name: str


class AuditSink:
    """A sink of a plugin's kind: keeps what it is sent."""

    kind = "audit"
    retry_for = 60.0
    timeout = 1.0

    def __init__(self, config: AuditConfig) -> None:
        self.name = config.name
        self.sent: list[Delivery] = []

    def send(self, delivery: Delivery) -> Sent:
        self.sent.append(delivery)
        return Sent("delivered", None)

    def close(self) -> None:
        pass


def _audit_plugin(built: list[AuditSink]) -> ModuleType:
    def build(config: Any, *, transport: Any = None, clock: Any = None) -> AuditSink:
        sink = AuditSink(config)
        built.append(sink)
        return sink

    def batch_hook(configs: Sequence[Any], *, clock: Any, on_queued: Any = None) -> Any:
        def hook(tx: BatchTransaction, result: BatchResult) -> None:
            for n, e in enumerate(result.new_failures):
                for config in configs:
                    body = e.native_id.encode()
                    tx.enqueue(
                        NewDelivery(f"audit-{e.native_id}-{n}", config.name, tx.source,
                                    tx.provider, 1, body),
                        clock(),
                    )  # fmt: skip

        return hook

    kind = SinkKind(
        "audit", configs=lambda s: [AuditConfig("audit-log")], build=build, batch_hook=batch_hook
    )
    module = ModuleType("logd_audit")

    @hookimpl
    def register_sinks(register: Callable[[SinkKind], None]) -> None:
        register(kind)

    module.register_sinks = register_sinks  # type: ignore[attr-defined]
    return module


def test_a_plugin_adds_a_sink_kind_that_is_wired_queued_and_delivered(tmp_path: Path) -> None:
    built: list[AuditSink] = []
    registry = Registry()
    register_module(registry, "logd_audit", _audit_plugin(built))
    assert sorted(registry.sink_kinds()) == ["audit", "otlp", "webhook"]
    config = write_config(tmp_path, [source("fleet")])  # no webhooks: only the audit sink
    settings = load_settings(config)
    store = MemoryStore()
    deliveries = wire_deliveries(settings, store, registry)
    assert [s.name for s in deliveries.sinks] == ["audit-log"] and len(deliveries.hooks) == 1
    store.commit_batch(
        "fleet", [entry("1"), entry("2")], None, hooks=deliveries.hooks, provider="fleetit"
    )
    assert deliveries.deliverer is not None
    assert deliveries.deliverer.deliver_due().by_sink == {
        "audit-log": {"delivered": 2, "retrying": 0, "dead": 0}
    }
    assert [d.body for d in built[0].sent] == [b"1", b"2"]
    assert deliveries.pending() == {"audit-log": 0}


def test_two_plugins_registering_one_kind_is_an_error_naming_it() -> None:
    registry = Registry()
    register_module(registry, "a", _audit_plugin([]))
    register_module(registry, "b", _audit_plugin([]))
    with pytest.raises(PluginError, match="sink kind 'audit' is registered twice"):
        registry.sink_kinds()


# -- the engine, the store and the deliverer together -------------------------------------


@pytest.mark.parametrize("store", ENGINE_STORES)
def test_a_poll_queues_its_new_failures_and_the_deliverer_sends_them(
    tmp_path: Path, store: str
) -> None:
    from logd_fleetit import FleetITSimulator

    from logd.delivery.receiver import Receiver
    from logd.plugin.testing import SyncRun

    with FleetITSimulator(records=120) as sim, Receiver(SECRET) as rx:
        webhook = hook(rx.url, alert_backfill=True, max_entries=25)
        run = SyncRun(
            tmp_path, [sim.demo_source("fleet")], webhooks=[webhook], store=engine_store(store)
        )
        deliveries = wire_deliveries(run.settings, run.store)
        run.engine.batch_hooks = deliveries.hooks
        assert run.sync()["fleet"].ok
        assert deliveries.deliverer is not None
        stats = deliveries.deliverer.deliver_due()
        failed = {r.id for r in run.rows(statuses=["failure"])}
        sent = [e["id"] for got in rx.received for e in got.json()["entries"]]
        assert failed and sorted(sent) == sorted(failed)  # each once
        assert all(got.verified for got in rx.received)
        assert stats.delivered == len(rx.received) == -(-len(failed) // 25)
        assert deliveries.pending() == {"ops": 0}
        deliveries.close()
        run.close()


def test_sync_run_and_retry_wire_deliveries_in_one_place() -> None:
    import logd

    root = Path(logd.__file__).parent
    for module in ("cli/sync.py", "daemon/service.py", "cli/webhooks.py"):
        text = (root / module).read_text()
        assert "wire_deliveries(" in text, module
        for other in ("outbox_hook(", "Deliverer(", "WebhookSink(", "delivery.webhooks"):
            assert other not in text, f"{module} wires deliveries itself: {other}"
