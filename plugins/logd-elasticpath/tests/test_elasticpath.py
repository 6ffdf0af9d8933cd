"""The Elastic Path provider against its simulator, through the real engine and store.

What every provider does is the contract suite's (`logd.plugin.contract`); these tests pin
Elastic Path's own: scopes, the idle-walk skip, token grant and refresh, JSON:API errors and
mapping.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from logd_elasticpath import ElasticPath, ElasticPathSimulator
from logd_elasticpath.provider import to_entry
from logd_elasticpath.simulator import LOGS_PATH, TOKEN_PATH, VENDOR_EXAMPLE

from logd.errors import ConfigError
from logd.plugin.entries import Status
from logd.plugin.provider import PollContext
from logd.plugin.simulator import SimRequest, SimResponse
from logd.plugin.testing import SyncRun

EXAMPLE_INTEGRATION = VENDOR_EXAMPLE["relationships"]["integration"]["data"]["id"]
MISSING = "0b5a6e0e-0000-4000-8000-000000000404"


class Clock:
    """One fake time for the provider (`ctx.now`), the simulator and the client's retry waits."""

    def __init__(self) -> None:
        self.start = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
        self.elapsed = 0.0
        self.waits: list[float] = []

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed)

    def monotonic(self) -> float:
        return 1000.0 + self.elapsed

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.elapsed += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    poll = ElasticPath.poll

    def timed_poll(self: ElasticPath, ctx: PollContext[Any]) -> Any:
        return poll(self, dataclasses.replace(ctx, now=fake.now))

    monkeypatch.setattr(ElasticPath, "poll", timed_poll)
    return fake


@pytest.fixture
def sim(clock: Clock) -> Iterator[ElasticPathSimulator]:
    with ElasticPathSimulator(clock=clock.monotonic) as s:
        yield s


def make_run(tmp_path: Path, sim: ElasticPathSimulator, clock: Clock, **keys: Any) -> SyncRun:
    run = SyncRun(tmp_path, [{**sim.demo_source("ep"), **keys}])
    run.engine.sleep = clock.sleep  # retry waits move the fake clock instead of sleeping
    return run


def ids(records: list[dict[str, Any]]) -> set[str]:
    return {str(r["id"]) for r in records}


def stored(run: SyncRun) -> set[str]:
    return {r.native_id for r in run.rows()}


def gets(sim: ElasticPathSimulator) -> list[Any]:
    return [r for r in sim.requests if r.method == "GET"]


# -- backfill and scopes --------------------------------------------------------------------


def test_store_wide_backfill_is_complete(
    tmp_path: Path, sim: ElasticPathSimulator, clock: Clock
) -> None:
    run = make_run(tmp_path, sim, clock)
    report = run.sync()["ep"]
    assert report.ok, report.error
    assert (report.new, report.pages) == (250, 3)
    assert stored(run) == ids(sim.all_records())
    assert {r.path for r in gets(sim)} == {LOGS_PATH}
    assert [r.query for r in gets(sim)] == [
        {"page[limit]": ["100"], "page[offset]": [str(o)]} for o in (0, 100, 200)
    ]
    assert run.cursor("ep") == {"totals": {"store": 250}}


def test_per_integration_backfill_polls_only_the_configured_ones(
    tmp_path: Path, sim: ElasticPathSimulator, clock: Clock
) -> None:
    first, second, third = sim.integrations
    run = make_run(tmp_path, sim, clock, integrations=[first, second])
    report = run.sync()["ep"]
    assert report.ok, report.error
    assert report.new == 130 + 80
    assert stored(run) == ids(sim.integrations[first]) | ids(sim.integrations[second])
    assert not stored(run) & ids(sim.integrations[third])
    paths = [r.path for r in gets(sim)]
    assert paths == [f"/v2/integrations/{first}/logs"] * 2 + [f"/v2/integrations/{second}/logs"]
    assert run.cursor("ep") == {"totals": {first: 130, second: 80}}


# -- incremental ----------------------------------------------------------------------------


@pytest.mark.parametrize("scoped", [False, True], ids=["store", "integrations"])
def test_idle_poll_costs_one_request_per_scope(
    tmp_path: Path, sim: ElasticPathSimulator, clock: Clock, scoped: bool
) -> None:
    keys = {"integrations": list(sim.integrations)} if scoped else {}
    run = make_run(tmp_path, sim, clock, **keys)
    assert run.sync()["ep"].ok
    cursor = run.cursor("ep")
    sim.requests.clear()
    report = run.sync()["ep"]
    scopes = 3 if scoped else 1
    assert (report.requests, report.new, report.updated) == (scopes, 0, 0)
    assert [r.query["page[offset]"] for r in sim.requests] == [["0"]] * scopes
    assert run.cursor("ep") == cursor


def test_grown_total_pages_on_and_stores_exactly_the_new_ids(
    tmp_path: Path, sim: ElasticPathSimulator, clock: Clock
) -> None:
    run = make_run(tmp_path, sim, clock)
    run.sync()
    # Ids that sort last land on the last page: only a walk to the end finds them.
    late = [f"ffffffff-0000-4000-8000-00000000000{i}" for i in range(3)]
    added = sim.add_records(3, ids=late) + sim.add_records(2)
    before = stored(run)
    report = run.sync()["ep"]
    assert report.ok, report.error
    assert report.new == 5
    assert stored(run) - before == ids(added)
    assert run.cursor("ep") == {"totals": {"store": 255}}


def test_same_total_with_an_unknown_id_on_the_first_page_walks_on(
    tmp_path: Path, sim: ElasticPathSimulator, clock: Clock
) -> None:
    run = make_run(tmp_path, sim, clock)
    run.sync()
    # Retention dropped one record and a new one arrived: the total alone cannot tell.
    sim.remove_record(sim.all_records()[-1]["id"])
    [new] = sim.add_records(1, ids=["00000000-0000-4000-8000-000000000001"])
    sim.requests.clear()
    report = run.sync()["ep"]
    assert report.new == 1 and run.store.get(f"ep:{new['id']}") is not None
    assert len(sim.requests) == 3


def test_total_moves_only_after_a_completed_walk(
    tmp_path: Path, sim: ElasticPathSimulator, clock: Clock
) -> None:
    armed = False
    serve = sim.handle

    def page_one_only(request: SimRequest) -> SimResponse:
        # Once armed, every page after the first fails for good (all retries included).
        if armed and request.path.startswith(LOGS_PATH) and request.arg("page[offset]") != "0":
            error = {"status": "500", "title": "Internal Server Error", "detail": "boom"}
            return SimResponse.json({"errors": [error]}, 500)
        return serve(request)

    sim.handle = page_one_only  # type: ignore[method-assign]
    run = SyncRun(tmp_path, [sim.demo_source("ep")])
    run.engine.sleep = clock.sleep
    run.sync()
    late = [f"ffffffff-0000-4000-8000-00000000000{i}" for i in range(4)]
    added = sim.add_records(4, ids=late)
    armed = True
    broken = run.sync()["ep"]
    assert broken.error is not None and "HTTP 500" in broken.error
    assert run.cursor("ep") == {"totals": {"store": 250}}  # the walk did not finish
    assert not stored(run) & ids(added)

    armed = False
    resumed = run.sync()["ep"]
    assert resumed.ok and resumed.new == 4
    assert run.cursor("ep") == {"totals": {"store": 254}}


# -- tokens ---------------------------------------------------------------------------------


def test_token_is_reused_across_syncs_while_valid(
    tmp_path: Path, sim: ElasticPathSimulator, clock: Clock
) -> None:
    run = make_run(tmp_path, sim, clock)
    run.sync()
    sim.add_records(2)
    clock.elapsed += 600
    assert run.sync()["ep"].new == 2
    [login] = sim.requests_to(TOKEN_PATH)
    assert login.form() == {
        "grant_type": "client_credentials",
        "client_id": sim.client_id,
        "client_secret": sim.client_secret,
    }
    assert login.header("Authorization") is None
    [token] = sim.tokens
    assert {r.header("Authorization") for r in gets(sim)} == {f"Bearer {token}"}


def test_token_is_refreshed_shortly_before_it_expires(
    tmp_path: Path, sim: ElasticPathSimulator, clock: Clock
) -> None:
    sim.expires_in = 600
    run = make_run(tmp_path, sim, clock)
    run.sync()
    clock.elapsed += 500  # well inside the lifetime: reused
    run.sync()
    assert len(sim.requests_to(TOKEN_PATH)) == 1
    clock.elapsed += 50  # 550 s of 600: inside the 60 s margin, so refreshed before use
    assert run.sync()["ep"].ok
    assert len(sim.requests_to(TOKEN_PATH)) == 2
    assert sim.served[401] == 0  # never sent a token the server was about to refuse


def test_a_401_after_a_fresh_login_fails_clearly(
    tmp_path: Path, sim: ElasticPathSimulator, clock: Clock
) -> None:
    sim.fail_next_jsonapi(401, "Unauthorized", "Token scope denied", times=2, path=LOGS_PATH)
    report = make_run(tmp_path, sim, clock).sync()["ep"]
    assert report.error is not None
    assert "refused a freshly issued access token" in report.error
    assert "Unauthorized: Token scope denied" in report.error


# -- mapping --------------------------------------------------------------------------------


def test_failure_mapping_includes_the_succeeded_true_404_example() -> None:
    seen = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    example = to_entry(VENDOR_EXAMPLE, seen)
    assert example.status is Status.FAILURE
    assert example.message == example.error == VENDOR_EXAMPLE["error_detail"]
    assert (example.timestamp, example.timestamp_observed) == (seen, True)
    assert (example.native_id, example.entity_type, example.entity_id) == (
        VENDOR_EXAMPLE["id"],
        "integration",
        EXAMPLE_INTEGRATION,
    )

    ok = {"id": "a", "succeeded": True, "status_code": 200, "body": "OK", "error_detail": ""}
    assert (to_entry(ok, seen).status, to_entry(ok, seen).message) == (Status.SUCCESS, "OK")
    assert to_entry(ok, seen).error is None
    cases = {
        "succeeded false": {**ok, "succeeded": False},
        "404 without detail": {**ok, "status_code": 404, "body": "Not Found"},
        "status 199": {**ok, "status_code": 199},
        "no answer": {**ok, "status_code": 0},
        "detail on a 200": {**ok, "error_detail": "schema mismatch"},
    }
    for name, record in cases.items():
        assert to_entry(record, seen).status is Status.FAILURE, name
    assert to_entry(cases["404 without detail"], seen).message == "Not Found"
    assert to_entry(cases["detail on a 200"], seen).message == "schema mismatch"
    assert to_entry({**ok, "status_code": 299}, seen).status is Status.SUCCESS
    assert to_entry({"id": "b", "succeeded": True}, seen).status is Status.SUCCESS

    stamped = {**ok, "meta": {"timestamps": {"created_at": "2025-11-02T08:30:00.123Z"}}}
    entry = to_entry(stamped, seen)
    assert entry.timestamp == datetime(2025, 11, 2, 8, 30, 0, 123000, tzinfo=UTC)
    assert entry.timestamp_observed is False


def test_synced_entries_keep_failures_and_first_sighting_times(
    tmp_path: Path, sim: ElasticPathSimulator, clock: Clock
) -> None:
    run = make_run(tmp_path, sim, clock)
    run.sync()
    example = run.store.get(f"ep:{VENDOR_EXAMPLE['id']}")
    assert example is not None and example.status == "failure"
    assert example.raw == VENDOR_EXAMPLE
    first_sync = clock.now()

    clock.elapsed += 86400
    [late] = sim.add_records(1)
    late.pop("meta", None)
    run.sync()  # the grown total re-walks and re-yields every record, seen a day later
    by_id = {r.native_id: r for r in run.rows()}
    for record in sim.all_records():
        created = record.get("meta", {}).get("timestamps", {}).get("created_at")
        row = datetime.fromisoformat(by_id[record["id"]].timestamp)
        if created:
            assert row == datetime.fromisoformat(created)
        elif record is late:
            assert row == clock.now()
        else:
            assert row == first_sync, record["id"]


# -- errors ---------------------------------------------------------------------------------


def test_jsonapi_error_text_reaches_the_user(
    tmp_path: Path, sim: ElasticPathSimulator, clock: Clock
) -> None:
    sim.fail_next_jsonapi(
        500, "Internal server error", "An internal error has occurred.", times=4, path=LOGS_PATH
    )
    run = make_run(tmp_path, sim, clock)
    report = run.sync()["ep"]
    assert report.error is not None and "\n" not in report.error
    assert "HTTP 500: Internal server error: An internal error has occurred." in report.error
    # The same words are what `logd status` shows as the source's last error.
    [(recorded,)] = run.store.db.execute("SELECT error FROM poll_runs").fetchall()
    assert recorded == report.error


def test_unknown_integration_is_named_and_the_others_still_sync(
    tmp_path: Path, sim: ElasticPathSimulator, clock: Clock
) -> None:
    run = make_run(tmp_path, sim, clock, integrations=[MISSING, EXAMPLE_INTEGRATION])
    report = run.sync()["ep"]
    assert report.error is not None
    assert f"integration {MISSING} not found: Not Found: The resource could not be found" in (
        report.error
    )
    assert stored(run) == ids(sim.integrations[EXAMPLE_INTEGRATION])
    assert run.cursor("ep") == {"totals": {EXAMPLE_INTEGRATION: 130}}


def test_rate_limit_429_is_survived(
    tmp_path: Path, sim: ElasticPathSimulator, clock: Clock
) -> None:
    sim.rate_limit = 2  # token + one page per second
    run = make_run(tmp_path, sim, clock)
    report = run.sync()["ep"]
    assert report.ok, report.error
    assert stored(run) == ids(sim.all_records())
    assert sim.served[429] >= 1 and report.retries == sim.served[429]
    assert clock.waits and set(clock.waits) == {1.0}  # Retry-After was honoured


def test_secrets_stay_out_of_errors_requests_logs_and_cursor(
    tmp_path: Path, sim: ElasticPathSimulator, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bad = make_run(tmp_path / "bad", sim, clock, client_secret="wrong-secret-value")
    report = bad.sync()["ep"]
    assert report.error is not None
    assert "refused the client credentials: Unauthorized: Invalid client credentials" in (
        report.error
    )

    run = make_run(tmp_path / "good", sim, clock)
    run.sync()
    sim.expire_tokens()
    sim.fail_next_jsonapi(401, "Unauthorized", times=2, path=LOGS_PATH)
    failed = run.sync()["ep"]
    assert failed.error is not None
    tokens = [r.header("Authorization") for r in gets(sim)]
    for secret in [sim.client_secret, sim.client_id, *filter(None, tokens)]:
        secret = secret.removeprefix("Bearer ")
        assert secret not in failed.error
        assert secret not in str(run.cursor("ep"))
        assert secret not in caplog.text
    for request in sim.requests:
        assert sim.client_secret not in str(request.query) + request.path
        if request.path != TOKEN_PATH:
            assert sim.client_secret.encode() not in request.body


# -- options --------------------------------------------------------------------------------


def test_options_default_to_the_us_region_and_take_integration_uuids(
    tmp_path: Path, sim: ElasticPathSimulator
) -> None:
    assert ElasticPath.Options.model_fields["base_url"].default == (
        "https://useast.api.elasticpath.com"
    )
    with pytest.raises(ConfigError, match=r"sources\[0\]\.integrations"):
        SyncRun(tmp_path, [{**sim.demo_source("ep"), "integrations": ["not-a-uuid"]}])
