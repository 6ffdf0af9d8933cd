"""Failure webhooks: what is queued (exactly the new failures), how it is signed and delivered.

A real receiver on 127.0.0.1 (`logd.receiver.Receiver`) checks every signature; time is an
injected clock, so retry schedules are tested without sleeping.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from delivery_env import SECRET, entry, hook
from standardwebhooks import Webhook

from logd import Entry, Status
from logd.cli.main import cli
from logd.config.settings import Settings, load_settings
from logd.delivery.deliverer import Deliverer
from logd.delivery.receiver import Receiver
from logd.delivery.signing import sign, verify
from logd.delivery.sinks.webhook import ERROR_TEXT_LIMIT, WebhookSink, outbox_hook
from logd.plugin.testing import write_config
from logd.store.interface import BatchResult, BatchTransaction, Delivery, Filters
from logd.store.sqlite.store import Store

WHSEC = "whsec_" + base64.b64encode(b"standard-webhooks-secret-32bytes").decode()


class Clock:
    """A settable clock, starting now."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def source(name: str) -> dict[str, Any]:
    return {"name": name, "provider": "fleetit", "base_url": "http://127.0.0.1:9", "token": "t"}


def settings_for(tmp_path: Path, *webhooks: dict[str, Any]) -> Settings:
    config = write_config(tmp_path, [source("fleet"), source("other")], webhooks=list(webhooks))
    return load_settings(config)


def webhook_deliverer(settings: Settings, store: Any, **kw: Any) -> Deliverer:
    """The deliverer over one webhook sink per configured webhook, as `wire_deliveries` builds."""
    shared = {k: kw[k] for k in ("clock",) if k in kw}
    transport = kw.pop("transport", None)
    sinks = [WebhookSink(w, transport=transport, **shared) for w in settings.webhooks]
    return Deliverer(sinks, store, **kw)


class Env:
    """A store, its outbox hook and a deliverer sharing one clock."""

    def __init__(self, tmp_path: Path, *webhooks: dict[str, Any], **deliverer: Any) -> None:
        self.settings = settings_for(tmp_path, *webhooks)
        self.clock = Clock()
        self.store = Store(self.settings.database)
        self.hook = outbox_hook(self.settings.webhooks, clock=self.clock)
        self.deliverer = webhook_deliverer(self.settings, self.store, clock=self.clock, **deliverer)

    def commit(self, *entries: Entry, src: str = "fleet") -> BatchResult:
        return self.store.commit_batch(
            src, list(entries), None, hooks=[self.hook], provider="fleetit"
        )

    def rows(self, **kw: Any) -> list[Delivery]:
        return list(reversed(self.store.list_deliveries(**kw)))  # oldest first


@pytest.fixture
def rx() -> Iterator[Receiver]:
    with Receiver(SECRET) as receiver:
        yield receiver


def fleetit_sample(received_signature: str, payload: dict[str, Any], ts: int, key: str) -> bool:
    """FleetIT's published `verify_webhook_signature`, verbatim in substance."""
    serialized_payload = json.dumps(payload, separators=(",", ":"))
    signed_payload = f"{ts}.{serialized_payload}"
    expected = hmac.new(key.encode(), signed_payload.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, received_signature)


# -- signing ----------------------------------------------------------------------------------


def test_fleetit_signature_verifies_on_raw_body_and_with_fleetit_sample(
    tmp_path: Path, rx: Receiver
) -> None:
    env = Env(tmp_path, hook(rx.url))
    # Non-ASCII text and nested raw JSON: the cases where a re-serialisation could differ.
    env.commit(entry("1", message="Zeitüberschreitung — café", raw={"b": [1, 2.5], "a": "ñ"}))
    assert env.deliverer.deliver_due().delivered == 1
    [got] = rx.received
    assert got.verified  # the receiver checks HMAC over the raw bytes
    assert got.headers["x-signature"] == got.headers["x-signature"].lower()
    assert got.headers["x-timestamp"] == str(int(env.clock().timestamp()))
    assert got.body.isascii()
    assert fleetit_sample(
        got.headers["x-signature"], json.loads(got.body), int(got.headers["x-timestamp"]), SECRET
    )
    assert not fleetit_sample(
        got.headers["x-signature"],
        json.loads(got.body),
        int(got.headers["x-timestamp"]),
        "wrong-secret",
    )
    assert not verify(
        "fleetit", SECRET, got.body + b" ", got.headers["x-timestamp"], got.headers["x-signature"]
    )


def test_standard_webhooks_signature_verified_by_the_standardwebhooks_package(
    tmp_path: Path,
) -> None:
    with Receiver(WHSEC, scheme="standard-webhooks") as rx:
        env = Env(tmp_path, hook(rx.url, secret=WHSEC, signature="standard-webhooks"))
        env.commit(entry("1", message="timeout"))
        assert env.deliverer.deliver_due().delivered == 1
        [got] = rx.received
    assert got.verified
    payload = Webhook(WHSEC).verify(got.body, got.headers)
    assert payload["entries"][0]["id"] == "fleet:1"
    assert got.headers["webhook-id"] == got.headers["x-logd-delivery"] == payload["delivery_id"]
    assert got.headers["webhook-signature"].startswith("v1,")
    assert "x-signature" not in got.headers


def test_sign_and_verify_round_trip_both_schemes() -> None:
    body = b'{"a":1}'
    for scheme, secret in (("fleetit", SECRET), ("standard-webhooks", WHSEC)):
        headers = sign(scheme, secret, "dlv_1", 1_700_000_000, body)  # type: ignore[arg-type]
        sig = headers.get("X-Signature") or headers["webhook-signature"]
        assert verify(scheme, secret, body, 1_700_000_000, sig, "dlv_1")  # type: ignore[arg-type]
        assert not verify(scheme, secret, body, 1_700_000_001, sig, "dlv_1")  # type: ignore[arg-type]


# -- what is queued ---------------------------------------------------------------------------


def test_new_failures_make_one_delivery_and_a_refetch_makes_none(tmp_path: Path) -> None:
    env = Env(tmp_path, hook("http://127.0.0.1:9/hook"))
    batch = [entry("1"), entry("2", error="timeout"), entry("3", Status.SUCCESS)]
    env.commit(*batch)
    [row] = env.rows()
    body = json.loads(row.body)
    assert set(body) == {"delivery_id", "webhook", "source", "provider", "count", "entries"}
    assert (body["delivery_id"], body["webhook"], body["source"], body["provider"]) == (
        row.delivery_id,
        "ops",
        "fleet",
        "fleetit",
    )
    assert body["count"] == row.count == 2
    # Entries in the query's JSON shape, exactly as `logd query --format json` shows them.
    assert body["entries"] == [env.store.get(f"fleet:{n}").as_dict() for n in ("1", "2")]  # type: ignore[union-attr]
    assert row.body == json.dumps(body, separators=(",", ":")).encode()

    env.commit(*[entry(e.native_id, e.status, error=e.error) for e in batch])  # re-fetch
    env.commit(entry("1", message="call 1 (edited)"))  # a known failure that changed
    assert len(env.rows()) == 1


def test_pending_that_becomes_a_failure_alerts_once(tmp_path: Path) -> None:
    env = Env(tmp_path, hook("http://127.0.0.1:9/hook"))
    env.commit(entry("7", Status.PENDING))
    assert env.rows() == []
    env.commit(entry("7", Status.FAILURE, error="refused"))
    env.commit(entry("7", Status.FAILURE, error="refused"))
    [row] = env.rows()
    assert [e["native_id"] for e in json.loads(row.body)["entries"]] == ["7"]


def test_one_delivery_per_webhook_per_source_chunked_by_max_entries(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/hook"
    env = Env(tmp_path, hook(url, max_entries=2), hook(url, name="all"))
    env.commit(*[entry(str(i), ago=timedelta(minutes=10 - i)) for i in range(5)])
    env.commit(entry("x"), src="other")
    rows = env.rows()
    ops = [r for r in rows if r.sink == "ops"]
    assert [(r.source, r.count) for r in ops] == [
        ("fleet", 2),
        ("fleet", 2),
        ("fleet", 1),
        ("other", 1),
    ]
    assert [(r.source, r.count) for r in rows if r.sink == "all"] == [("fleet", 5), ("other", 1)]
    ids = [e["native_id"] for r in ops[:3] for e in json.loads(r.body)["entries"]]
    assert ids == ["0", "1", "2", "3", "4"]  # oldest first, none twice
    assert len({r.delivery_id for r in rows}) == len(rows)


def test_max_age_keeps_old_failures_stored_but_unsent(tmp_path: Path) -> None:
    env = Env(tmp_path, hook("http://127.0.0.1:9/hook", max_age="1d"))
    env.commit(entry("old", ago=timedelta(days=2)), entry("new", ago=timedelta(hours=2)))
    assert env.store.get("fleet:old") is not None
    [row] = env.rows()
    assert [e["native_id"] for e in json.loads(row.body)["entries"]] == ["new"]
    env.commit(entry("old2", ago=timedelta(days=3)))
    assert len(env.rows()) == 1


def test_sources_filter(tmp_path: Path) -> None:
    env = Env(tmp_path, hook("http://127.0.0.1:9/hook", sources=["other"]))
    env.commit(entry("1"), src="fleet")
    assert env.rows() == []
    env.commit(entry("2"), src="other")
    assert [r.source for r in env.rows()] == ["other"]


def test_match_filter_is_fts5_on_the_entry(tmp_path: Path) -> None:
    env = Env(tmp_path, hook("http://127.0.0.1:9/hook", match="timeout OR refused"))
    env.commit(
        entry("1", error="Gateway timeout"),
        entry("2", message="connection refused by peer"),
        entry("3", error="invalid plate"),
        entry("4", raw={"detail": "upstream timeout"}),  # raw's text is searchable too
    )
    [row] = env.rows()
    assert sorted(e["native_id"] for e in json.loads(row.body)["entries"]) == ["1", "2", "4"]
    env.commit(entry("5", error="invalid plate"))
    assert len(env.rows()) == 1


def test_outbox_rows_commit_and_roll_back_with_their_batch(tmp_path: Path) -> None:
    env = Env(tmp_path, hook("http://127.0.0.1:9/hook"))

    def crash(tx: BatchTransaction, result: BatchResult) -> None:
        raise RuntimeError("killed mid-batch")

    with pytest.raises(RuntimeError):
        env.store.commit_batch(
            "fleet", [entry("1")], None, hooks=[env.hook, crash], provider="fleetit"
        )
    assert env.store.get("fleet:1") is None and env.rows() == []
    env.commit(entry("1"))  # the next poll finds the failure new again: it is still alerted
    assert len(env.rows()) == 1


# -- delivering -------------------------------------------------------------------------------


def test_crash_between_commit_and_delivery_is_delivered_after_restart(
    tmp_path: Path, rx: Receiver
) -> None:
    env = Env(tmp_path, hook(rx.url))
    env.commit(entry("1"))
    env.store.close()  # the process dies here: committed, never sent
    assert rx.received == []

    store = Store(env.settings.database)
    stats = webhook_deliverer(env.settings, store).deliver_due()
    assert (stats.delivered, len(rx.received)) == (1, 1)
    assert rx.received[0].json()["entries"][0]["id"] == "fleet:1"
    assert webhook_deliverer(env.settings, store).deliver_due().delivered == 0  # done stays done


def test_receiver_down_then_up_is_delivered_once_with_the_same_id(
    tmp_path: Path, rx: Receiver
) -> None:
    env = Env(tmp_path, hook(rx.url))
    env.commit(entry("1"))
    rx.respond_with(503, (503, {"Retry-After": "600"}, "busy"))

    first = env.deliverer.deliver_due()
    assert (first.delivered, first.retrying) == (0, 1)
    due = env.deliverer.next_due()
    assert due is not None and due > env.clock()
    assert env.deliverer.deliver_due().retrying == 0  # not due yet: nothing sent
    assert len(rx.received) == 1

    env.clock.now = due
    second = env.deliverer.deliver_due()
    assert second.retrying == 1
    due = env.deliverer.next_due()
    assert due is not None and due >= env.clock() + timedelta(seconds=600)  # Retry-After

    env.clock.now = due
    assert env.deliverer.deliver_due().delivered == 1
    assert env.deliverer.deliver_due().delivered == 0
    assert env.deliverer.next_due() is None
    ids = {r.delivery_id for r in rx.received}
    assert len(rx.received) == 3 and len(ids) == 1
    [row] = env.rows()
    assert (row.state, row.attempts, row.last_status) == ("done", 3, 200)
    assert ids == {row.delivery_id}


def test_retries_back_off_then_die_after_retry_for(tmp_path: Path, rx: Receiver) -> None:
    env = Env(tmp_path, hook(rx.url, retry_for="1h"))
    env.commit(entry("1"))
    rx.respond_with(*[500] * 100)
    waits = []
    while (stats := env.deliverer.deliver_due()).dead == 0:
        assert stats.retrying == 1
        due = env.deliverer.next_due()
        assert due is not None
        waits.append((due - env.clock()).total_seconds())
        env.clock.now = due
    assert waits[1] > waits[0] and waits[2] > waits[1]  # exponential
    assert len(waits) < 20
    [row] = env.rows()
    assert row.state == "dead" and "HTTP 500" in (row.last_error or "")
    assert env.store.outbox_counts("source") == {"fleet": {"pending": 0, "dead": 1, "done": 0}}


def test_client_error_is_dead_at_once_with_the_response_text(tmp_path: Path, rx: Receiver) -> None:
    env = Env(tmp_path, hook(rx.url))
    env.commit(entry("1"))
    rx.respond_with((400, {}, "unknown field 'entries'"))
    stats = env.deliverer.deliver_due()
    assert (stats.dead, stats.retrying) == (1, 0)
    [row] = env.rows()
    assert (row.state, row.attempts, row.last_status) == ("dead", 1, 400)
    assert "unknown field 'entries'" in (row.last_error or "")
    env.clock.advance(86_400)
    assert env.deliverer.deliver_due().dead == 0 and len(rx.received) == 1


def test_redirect_is_not_followed(tmp_path: Path, rx: Receiver) -> None:
    env = Env(tmp_path, hook(rx.url))
    env.commit(entry("1"))
    rx.respond_with((302, {"Location": "http://127.0.0.1:9/elsewhere"}, ""))
    assert env.deliverer.deliver_due().dead == 1
    assert len(rx.received) == 1
    [row] = env.rows()
    assert "redirect" in (row.last_error or "") and "not followed" in (row.last_error or "")


def test_network_error_is_retried(tmp_path: Path) -> None:
    env = Env(tmp_path, hook("http://127.0.0.1:9/closed"))
    env.commit(entry("1"))
    stats = env.deliverer.deliver_due()
    assert stats.retrying == 1
    [row] = env.rows()
    assert row.state == "pending" and row.last_status is None and "Error" in (row.last_error or "")


def test_a_slow_endpoint_does_not_delay_another(tmp_path: Path) -> None:
    fast_done = threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "slow.example":
            # Answers only once the other webhook has been delivered: sequential lanes fail.
            return httpx.Response(200 if fast_done.wait(5) else 504)
        fast_done.set()
        return httpx.Response(204)

    env = Env(
        tmp_path,
        hook("https://slow.example/hook", name="slow"),
        hook("https://fast.example/hook", name="fast"),
        transport=httpx.MockTransport(handler),
    )
    env.commit(entry("1"))
    stats = env.deliverer.deliver_due()
    assert stats.by_webhook == {
        "slow": {"delivered": 1, "retrying": 0, "dead": 0},
        "fast": {"delivered": 1, "retrying": 0, "dead": 0},
    }


def test_custom_headers_are_sent(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    env = Env(
        tmp_path,
        hook("https://hooks.example/logd", headers={"X-Team": "payments"}),
        transport=httpx.MockTransport(handler),
    )
    env.commit(entry("1"))
    env.deliverer.deliver_due()
    [request] = seen
    assert request.headers["x-team"] == "payments"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-logd-delivery"] == env.rows()[0].delivery_id


def test_a_failing_endpoint_holds_its_other_deliveries_until_the_next_attempt(
    tmp_path: Path, rx: Receiver
) -> None:
    env = Env(tmp_path, hook(rx.url))
    env.commit(entry("1"))
    env.commit(entry("2"), src="other")
    rx.respond_with(503)
    assert env.deliverer.deliver_due().retrying == 1
    assert len(rx.received) == 1  # the second was not tried against a failing endpoint
    due = env.deliverer.next_due()
    assert due is not None and due > env.clock()
    assert env.deliverer.deliver_due().retrying == 0 and len(rx.received) == 1
    env.clock.now = due
    assert env.deliverer.deliver_due().delivered == 2
    assert [r.attempts for r in env.rows()] == [2, 1]


def test_a_lane_stops_at_its_time_budget_and_the_rest_waits_for_the_next_round(
    tmp_path: Path, rx: Receiver
) -> None:
    env = Env(tmp_path, hook(rx.url), lane_budget=0)
    env.commit(entry("1"))
    env.commit(entry("2"), src="other")
    assert env.deliverer.deliver_due().delivered == 1
    assert env.deliverer.next_due() is not None
    assert env.deliverer.deliver_due().delivered == 1
    assert env.deliverer.next_due() is None and len(rx.received) == 2


def test_deliveries_queued_while_a_lane_sends_go_out_in_the_same_round(tmp_path: Path) -> None:
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content)["entries"][0]["native_id"])
        if len(sent) == 1:
            env.commit(entry("2"))  # a poll commits another batch while the lane is sending
        return httpx.Response(204)

    env = Env(tmp_path, hook("https://hooks.example/logd"), transport=httpx.MockTransport(handler))
    env.commit(entry("1"))
    assert env.deliverer.deliver_due().delivered == 2
    assert sent == ["1", "2"] and [r.state for r in env.rows()] == ["done", "done"]


def test_a_round_reads_and_sends_while_a_long_commit_holds_the_store(
    tmp_path: Path, rx: Receiver
) -> None:
    env = Env(tmp_path, hook(rx.url))
    env.commit(entry("1"))
    rounds: list[Any] = []
    worker = threading.Thread(target=lambda: rounds.append(env.deliverer.deliver_due()))
    with env.store.lock:  # as a poll committing a large batch holds it
        worker.start()
        assert rx.wait_for(1, timeout=5), "the round waited for the writer to read the outbox"
        assert worker.is_alive()  # recording the outcome is a write: that waits its turn
    worker.join(5)
    assert rounds[0].delivered == 1 and env.rows()[0].state == "done"


class _KeepAlive(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    peers: list[int] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).peers.append(self.client_address[1])
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_lane_keeps_its_connection_from_one_round_to_the_next(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KeepAlive)
    server.daemon_threads = True
    _KeepAlive.peers = []
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    try:
        env = Env(tmp_path, hook(f"http://127.0.0.1:{server.server_address[1]}/hook"))
        with env.deliverer as deliverer:
            for native_id in ("1", "2"):
                env.commit(entry(native_id))
                assert deliverer.deliver_due().delivered == 1
        assert len(_KeepAlive.peers) == 2 and len(set(_KeepAlive.peers)) == 1
    finally:
        server.shutdown()
        server.server_close()


# -- secrets in what a receiver says back -----------------------------------------------------

HEADER_TOKEN = "hdr-token-7f3a9c0e1b2d4f6a"
QUERY_TOKEN = "qtok-55aa66bb77cc"
PATH_TOKEN = "ptok0123456789abcdef"


def _echoing(padding: int = 0) -> httpx.MockTransport:
    """A receiver that answers 400 with every request header (and the URL) echoed back."""

    def handler(request: httpx.Request) -> httpx.Response:
        echoed = " ".join(f"{k}: {v}" for k, v in request.headers.items())
        auth = request.headers["authorization"]
        text = f"{'x' * padding}{auth} bad request to {request.url}; {echoed}"
        return httpx.Response(400, text=text)

    return httpx.MockTransport(handler)


@pytest.mark.parametrize("padding", [0, None], ids=["whole", "straddling-the-cut"])
def test_secrets_echoed_by_a_receiver_are_masked_in_log_outbox_and_list(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, padding: int | None
) -> None:

    if padding is None:  # the token straddles the cut: its first 10 characters fit before it
        padding = ERROR_TEXT_LIMIT - len("Bearer ") - 10
    env = Env(
        tmp_path,
        hook(
            f"https://hooks.example/logd/{PATH_TOKEN}?token={QUERY_TOKEN}",
            headers={"Authorization": f"Bearer {HEADER_TOKEN}"},
        ),
        transport=_echoing(padding),
    )
    env.commit(entry("1"))
    with caplog.at_level("DEBUG", logger="logd"):
        assert env.deliverer.deliver_due().dead == 1
    [row] = env.rows()
    listed = CliRunner().invoke(
        cli, ["webhooks", "list", "--db", str(env.store.path), "-f", "json"]
    )
    assert listed.exit_code == 0, listed.output
    for text in (row.last_error or "", caplog.text, listed.output):
        for secret in (HEADER_TOKEN, QUERY_TOKEN, PATH_TOKEN, SECRET, "hdr-token", "hdr-"):
            assert secret not in text
    assert "***" in (row.last_error or "")


def test_the_log_filter_masks_webhook_secrets_in_httpx_lines_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    from logd import logging_setup as logs

    env = Env(
        tmp_path,
        hook(f"https://hooks.example/logd/{PATH_TOKEN}?token={QUERY_TOKEN}"),
        transport=httpx.MockTransport(lambda request: httpx.Response(204)),
    )
    env.commit(entry("1"))
    logs.setup("debug")
    try:
        assert env.deliverer.deliver_due().delivered == 1
    finally:
        for name in ("logd", "httpx", "httpcore"):
            logger = logging.getLogger(name)
            logger.handlers[:] = []
            logger.setLevel(logging.NOTSET)
            logger.propagate = True
    err = capsys.readouterr().err
    assert "HTTP Request: POST https://hooks.example/logd/***?token=***" in err
    assert PATH_TOKEN not in err and QUERY_TOKEN not in err


# -- a slow receiver ---------------------------------------------------------------------------


class _Drip:
    """A receiver on 127.0.0.1 that reads the request, then answers one byte every `every`
    seconds until the client hangs up or the drip is closed."""

    def __init__(self, every: float = 0.5) -> None:
        self.every = every
        self.closed = threading.Event()
        self.requests = 0
        drip = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                drip.requests += 1
                head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
                try:
                    for i in range(len(head) + 1000):
                        self.wfile.write((head + b"x" * 1000)[i : i + 1])
                        self.wfile.flush()
                        if drip.closed.wait(drip.every):
                            return
                except OSError:
                    return

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.closed.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def drip() -> Iterator[_Drip]:
    slow = _Drip()
    yield slow
    slow.close()


def test_a_dripping_receiver_fails_at_the_whole_request_deadline_and_is_retried(
    tmp_path: Path, drip: _Drip
) -> None:
    env = Env(tmp_path, hook(drip.url, timeout="1s"))
    env.commit(entry("1"))
    done: list[Any] = []
    worker = threading.Thread(target=lambda: done.append(env.deliverer.deliver_due()))
    worker.start()
    worker.join(20)  # a drip of 1,000+ bytes at 2 a second would take 8 minutes
    assert not worker.is_alive(), "the attempt was not bounded by the webhook's timeout"
    assert done[0].retrying == 1
    [row] = env.rows()
    assert row.state == "pending" and "Timeout" in (row.last_error or "")


def test_a_slow_webhook_does_not_hold_up_a_healthy_one_under_the_daemons_workers(
    tmp_path: Path, drip: _Drip, rx: Receiver
) -> None:
    env = Env(
        tmp_path,
        hook(drip.url, name="slow", timeout="30s"),  # stuck for the whole test
        hook(rx.url, name="healthy"),
    )
    stop = threading.Event()
    env.deliverer.start(stop, idle=0.2)
    try:
        for i in range(10):
            env.commit(entry(str(i)))
            env.deliverer.kick()
            assert rx.wait_for(i + 1, timeout=10), f"healthy got {len(rx.received)} of {i + 1}"
        assert drip.requests == 1  # the slow lane is still on its first attempt
    finally:
        stop.set()
        env.deliverer.close()


def test_sync_with_a_slow_webhook_exits_and_says_what_stays_pending(
    tmp_path: Path, drip: _Drip, rx: Receiver
) -> None:
    from logd_fleetit import FleetITSimulator

    with FleetITSimulator(records=30) as sim:
        config = write_config(
            tmp_path,
            [sim.demo_source("fleet")],
            webhooks=[
                hook(drip.url, name="slow", alert_backfill=True, timeout="1s"),
                hook(rx.url, name="healthy", alert_backfill=True),
            ],
        )
        done: list[Any] = []
        worker = threading.Thread(
            target=lambda: done.append(CliRunner().invoke(cli, ["sync", "-q", "-c", str(config)]))
        )
        worker.start()
        worker.join(60)
        assert not worker.is_alive(), "logd sync did not exit with a slow webhook"
    result = done[0]
    assert result.exit_code == 0, result.output
    assert "webhook healthy: 1 delivered, 0 retrying, 0 dead" in result.output
    assert "webhook slow: 0 delivered, 1 retrying, 0 dead (1 pending)" in result.output


def test_rows_queued_after_a_failed_one_wait_behind_it_in_order(
    tmp_path: Path, rx: Receiver
) -> None:
    env = Env(tmp_path, hook(rx.url))
    env.commit(entry("1"))
    rx.respond_with(503)
    assert env.deliverer.deliver_due().retrying == 1
    env.commit(entry("2"))  # queued after the failure, due now
    assert env.deliverer.deliver_due().outcomes == [] and len(rx.received) == 1
    env.clock.now = env.deliverer.next_due() or env.clock.now
    rx.respond_with(200)
    assert env.deliverer.deliver_due().delivered == 2
    sent = [r.json()["entries"][0]["native_id"] for r in rx.received]
    assert sent == ["1", "1", "2"]


def test_under_logd_run_a_slow_webhook_does_not_hold_up_another_webhooks_rounds(
    tmp_path: Path, drip: _Drip, rx: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging

    from logd_fleetit import FleetITSimulator

    from logd.daemon import service as daemon_module
    from logd.daemon.service import Daemon

    def no_exit(code: int) -> None:
        raise AssertionError("shutdown gave up waiting for a webhook attempt")

    # A stop that waits out its timeout ends the process: here, fail the test instead.
    monkeypatch.setattr(daemon_module.os, "_exit", no_exit)

    saved = {
        name: (lg.handlers[:], lg.level, lg.propagate)
        for name in ("logd", "apscheduler")
        for lg in [logging.getLogger(name)]
    }
    with FleetITSimulator(records=250) as sim:
        sim.latency = 0.3  # three pages, each committed (and alerted) on its own
        fleet = {**sim.demo_source("fleet"), "interval": 3600}
        config = write_config(
            tmp_path,
            [fleet],
            webhooks=[
                hook(
                    drip.url, name="slow", alert_backfill=True, timeout="60s"
                ),  # stuck for the whole test
                hook(rx.url, name="healthy", alert_backfill=True),
            ],
        )
        daemon = Daemon(config, shutdown_timeout=10)
        daemon.start()
        try:
            store = Store(daemon.store.path)
            end = datetime.now(UTC) + timedelta(seconds=20)

            def sent_and_failed() -> tuple[set[str], set[str]]:
                got = {e["native_id"] for r in rx.received for e in r.json()["entries"]}
                failed = {
                    r.native_id for r in store.search(Filters(statuses=("failure",)), limit=None)
                }
                return got, failed

            while True:
                got, failed = sent_and_failed()
                finished = daemon._last_report is not None
                if finished and failed and got == failed:
                    break
                assert datetime.now(UTC) < end, f"healthy got {len(got)} of {len(failed)}"
                threading.Event().wait(0.05)
            assert len(rx.received) >= 2  # more than one batch: more than one round
            assert drip.requests == 1  # the slow lane is still on its first attempt
            store.close()
        finally:
            daemon.shutdown()
            for name, (handlers, level, propagate) in saved.items():
                lg = logging.getLogger(name)
                lg.handlers[:], lg.level, lg.propagate = handlers, level, propagate
