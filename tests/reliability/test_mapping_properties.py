"""Property tests: whatever JSON a vendor sends, each provider answers in kind.

For each of the five providers, any value the API could send as a record gives an entry or a
quarantined record (`Invalid`), and any page body gives batches or one clear `LogdError`:
never another exception out of the provider, never an entry the store cannot key. The
records are drawn by hypothesis from the shapes each vendor documents with every field
replaced by arbitrary JSON, plus arbitrary JSON where a record should be.

Runs are derandomized (seeded from each test, so CI draws the same examples) and small: a
few seconds per provider. Hypothesis still adapts its search to how long examples take, so
a loaded machine may try others: a failure found that way is pinned with `@example`. Raise
`MAPPING_EXAMPLES` to search further by hand.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from logd_akinon import provider as akinon
from logd_akinon import records as akinon_records
from logd_elasticpath import provider as elasticpath
from logd_fleetit import provider as fleetit
from logd_maestra import provider as maestra
from logd_maestra import records as maestra_records
from logd_maestra.simfiles import COLUMNS, render_part
from logd_pegasus import provider as pegasus

from logd import Batch, Entry, Invalid, LogdError, map_record, map_records
from logd.plugin.http import RetryPolicy, SourceClient
from logd.plugin.provider import PollContext, Provider
from logd.store.sqlite.rows import prepare
from logd.store.sqlite.search import SLOTS

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
INT64 = 2**63 - 1

PROPERTY = settings(
    max_examples=int(os.environ.get("MAPPING_EXAMPLES", "60")),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# -- what a vendor could send ----------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
#: Any JSON value (NaN and infinities included: Python's json writes and reads them).
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
#: Times as vendors get them wrong: impossible dates, the edges of the store key, epochs.
times = st.one_of(
    st.sampled_from(
        [
            "0000-00-00 00:00:00",
            "2026-04-30T10:00:00Z",
            "2026-04-30 10:00:00",
            "2026-04-30T10:00:00.123456789+03:00",
            "9999-12-31T23:59:59",
            "2262-04-12T00:00:00+00:00",
            "1677-09-21T00:00:00Z",
            "1899-12-31T23:59:59Z",
            "2200-01-01T00:00:00Z",
            "2026-13-01",
            "30.04.2026 10:00",
            "",
            "1714557600000",
            "NaN",
        ]
    ),
    st.datetimes(timezones=st.none() | st.just(UTC)).map(lambda d: d.isoformat()),
    st.integers(min_value=-(2**66), max_value=2**66),
    st.floats(allow_nan=True, allow_infinity=True),
    json_values,
)
ids = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=12),
    st.sampled_from(["", " ", "None", "0"]),
    json_values,
)


def record(required: dict[str, Any], optional: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A vendor record: the documented keys with arbitrary values, or any JSON at all."""
    shaped = st.fixed_dictionaries(required, optional=optional)
    return st.one_of(
        shaped, st.fixed_dictionaries({}, optional={**required, **optional}), json_values
    )


def sometimes(good: Any) -> st.SearchStrategy[Any]:
    """Mostly a good value (so mapping goes deep), otherwise any JSON."""
    return st.one_of(st.just(good), json_values)


fleetit_records = record(
    {"id": ids, "timestamp": times},
    {
        "success": json_values,
        "details": st.fixed_dictionaries({}, optional={"error": json_values}) | json_values,
        "response": st.fixed_dictionaries({}, optional={"message": json_values}) | json_values,
        "entity_type": json_values,
        "entity_id": json_values,
    },
)
elasticpath_records = record(
    {"id": ids},
    {
        "meta": st.fixed_dictionaries(
            {}, optional={"timestamps": st.fixed_dictionaries({}, optional={"created_at": times})}
        )
        | json_values,
        "succeeded": json_values,
        "status_code": json_values,
        "error_detail": json_values,
        "body": json_values,
        "relationships": json_values,
    },
)
changelogs = record(
    {"id": ids, "system_time": times},
    {
        "method": json_values,
        "path": json_values,
        "response": st.fixed_dictionaries(
            {}, optional={"status_code": json_values, "status": json_values, "data": json_values}
        )
        | json_values,
    },
)
modifications = record(
    {"$$id": ids, "$$object": ids, "$$system_time": times},
    {"name": json_values, "$$user": json_values},
)
akinon_logs = record(
    {"id": ids, "created": times},
    {
        "state": sometimes(3),
        "status": sometimes(3),
        "process_group_name": json_values,
        "filename_uuid": sometimes("f-1"),
        "original_filename_uuid": json_values,
    },
)
csv_text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=20)
maestra_rows = st.dictionaries(
    st.sampled_from(COLUMNS) | st.text(max_size=6),
    st.one_of(csv_text, times.map(str), st.none(), st.lists(csv_text, max_size=2)),
    max_size=8,
)


# -- checks ------------------------------------------------------------------------------------


def storable(entry: Entry) -> None:
    """The store can key and serialize it: what a mapping must guarantee."""
    assert isinstance(entry, Entry)
    prepared = prepare(entry, "test")
    assert prepared.key >= -INT64 and prepared.key + SLOTS * 1000 <= INT64
    assert isinstance(entry.native_id, str) and entry.native_id


def mapped_or_quarantined(results: tuple[list[Entry], list[Invalid]], n: int) -> None:
    entries, invalid = results
    assert len(entries) + len(invalid) == n
    for entry in entries:
        storable(entry)
    for bad in invalid:
        assert isinstance(bad, Invalid) and bad.reason
        storable(bad.to_entry(NOW))


def batches_or_clear_error(batches: Callable[[], Iterator[Batch]]) -> list[Batch]:
    """Every batch holds storable entries; the only exception allowed is a `LogdError`."""
    seen: list[Batch] = []
    try:
        for batch in batches():
            seen.append(batch)
            for entry in batch.entries:
                storable(entry)
            for bad in batch.invalid:
                storable(bad.to_entry(NOW))
            if len(seen) >= 20:  # paging that does not end is another test's business
                break
    except LogdError as exc:
        assert str(exc).strip()
    return seen


def dumps(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


Handler = Callable[[httpx.Request], httpx.Response]


def poll(provider: Provider[Any], options: dict[str, Any], handler: Handler) -> Iterator[Batch]:
    """`provider.poll` against `handler`, as the engine would call it (no store, no sleep)."""
    opts = type(provider).Options.model_validate(options)
    client = SourceClient(
        "src",
        opts.base_url,
        retry=RetryPolicy(attempts=1),
        sleep=lambda seconds: None,
        transport=httpx.MockTransport(handler),
    )
    ctx: PollContext[Any] = PollContext(
        source="src",
        options=opts,
        client=client,
        cursor=None,
        log=logging.getLogger("logd.test"),
        now=lambda: NOW,
        sleep=lambda seconds: None,
    )
    try:
        yield from provider.poll(ctx)
    finally:
        client.close()


def json_answer(body: Any) -> httpx.Response:
    return httpx.Response(200, content=dumps(body), headers={"Content-Type": "application/json"})


# -- FleetIT -----------------------------------------------------------------------------------


@PROPERTY
@given(st.lists(fleetit_records, max_size=4))
def test_fleetit_records_map_or_are_quarantined(records: list[Any]) -> None:
    mapped_or_quarantined(map_records(records, fleetit.to_entry), len(records))


@PROPERTY
@given(
    st.one_of(
        st.fixed_dictionaries(
            {"results": st.lists(fleetit_records, max_size=4)},
            optional={
                "count": json_values,
                "next": st.none()
                | json_values
                | st.sampled_from(["http://x/?offset=100", "?offset=abc", "?offset=-1"]),
            },
        ),
        json_values,
    )
)
# What a run under load found once (hypothesis's search is not the same on every machine).
@example({"results": [], "next": True})
@example({"results": [], "next": [None]})
@example({"results": [], "next": "http://x/?offset=abc&limit=100"})
def test_fleetit_any_page_gives_batches_or_a_clear_error(body: Any) -> None:
    answers = iter([body])

    def handler(request: httpx.Request) -> httpx.Response:
        return json_answer(next(answers, {"results": [], "next": None}))

    options = {"base_url": "https://fleet.test", "token": "t0ken"}
    batches_or_clear_error(lambda: poll(fleetit.FleetIT(), options, handler))


# -- Elastic Path -----------------------------------------------------------------------------

TOKEN = {"access_token": "tok3n", "expires_in": 3600, "token_type": "Bearer"}


@PROPERTY
@given(st.lists(elasticpath_records, max_size=4))
def test_elasticpath_records_map_or_are_quarantined(records: list[Any]) -> None:
    mapped_or_quarantined(
        map_records(records, lambda r: elasticpath.to_entry(r, NOW)), len(records)
    )


@PROPERTY
@given(
    st.one_of(
        st.lists(elasticpath_records, max_size=4).map(
            lambda data: {"data": data, "results": {"total": len(data)}}
        ),
        json_values,
    )
)
def test_elasticpath_any_page_gives_batches_or_a_clear_error(body: Any) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == elasticpath.TOKEN_PATH:
            return json_answer(TOKEN)
        return json_answer(body)

    options = {"base_url": "https://ep.test", "client_id": "id-1", "client_secret": "s3cret"}
    batches_or_clear_error(lambda: poll(elasticpath.ElasticPath(), options, handler))


# -- Pegasus (changelogs and modifications) ---------------------------------------------------


@PROPERTY
@given(st.lists(changelogs, max_size=4), st.lists(modifications, max_size=4))
def test_pegasus_records_map_or_are_quarantined(logs: list[Any], mods: list[Any]) -> None:
    mapped_or_quarantined(map_records(logs, pegasus.changelog_entry), len(logs))
    mapped_or_quarantined(
        map_records(
            mods,
            lambda r: pegasus.modification_entry("vehicles", r),
            native_id=pegasus.modification_id,
        ),
        len(mods),
    )


@PROPERTY
@given(
    st.one_of(
        st.lists(changelogs, max_size=4).map(lambda d: {"data": d, "total": len(d)}),
        json_values,
    ),
    st.one_of(
        st.lists(modifications, max_size=4).map(
            lambda d: {"data": d, "next_pointer": -1, "sections": 1}
        ),
        json_values,
    ),
)
def test_pegasus_any_page_gives_batches_or_a_clear_error(logs: Any, mods: Any) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith(pegasus.MODIFICATIONS):
            return json_answer(mods)
        return json_answer(logs)

    options = {
        "base_url": "https://pegasus.test/api",
        "token": "t0ken",
        "modifications": [{"resource": "vehicles"}],
    }
    batches_or_clear_error(lambda: poll(pegasus.Pegasus(), options, handler))


# -- Akinon (main and line logs, downloads) ---------------------------------------------------


def zipped(content: bytes, name: str = "log.json") -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, content)
    return base64.b64encode(buffer.getvalue()).decode()


downloads = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=60).map(lambda b: base64.b64encode(b).decode()),
    json_values.map(lambda v: zipped(dumps(v))),
    st.binary(max_size=40).map(zipped),
    st.just(zipped(b"[" * 5000 + b"]" * 5000)),  # nested too deep for the parser
)


@PROPERTY
@given(st.lists(akinon_logs, max_size=4), st.sampled_from([1, 2, 3]))
def test_akinon_records_map_or_are_quarantined(records: list[Any], log_type: int) -> None:
    results = map_records(
        records,
        lambda r: akinon_records.to_entry(r, log_type=log_type, flow_id="9"),
        native_id=lambda r: akinon_records.native_id(r, log_type),
    )
    mapped_or_quarantined(results, len(records))


@PROPERTY
@given(downloads)
def test_akinon_any_download_is_details_or_a_download_error(body: str) -> None:
    try:
        details = akinon_records.decode_download(body)
    except akinon_records.DownloadError as exc:
        assert str(exc)
    else:
        json.dumps(details, allow_nan=True)


@PROPERTY
@given(
    st.one_of(
        st.lists(akinon_logs, max_size=3).map(lambda r: {"results": r, "next": None}), json_values
    ),
    st.one_of(
        st.lists(akinon_logs, max_size=3).map(lambda r: {"results": r, "next": None}), json_values
    ),
    downloads,
)
def test_akinon_any_page_gives_batches_or_a_clear_error(
    logs: Any, lines: Any, download: str
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/logs/download":
            return httpx.Response(200, text=download)
        query = parse_qs(request.url.query.decode())
        return json_answer(lines if query.get("log_type") == ["3"] else logs)

    options = {
        "base_url": "https://akinon.test",
        "token": "t0ken",
        "project_id": "p",
        "project_slug": "shop",
        "flow_ids": ["9"],
        "line_logs": True,
    }
    batches_or_clear_error(lambda: poll(akinon.Akinon(), options, handler))


# -- Maestra (export rows) ---------------------------------------------------------------------


@PROPERTY
@given(st.lists(maestra_rows, max_size=4))
def test_maestra_rows_map_or_are_quarantined(rows: list[Any]) -> None:
    results = [
        map_record(row, maestra_records.to_entry, native_id=maestra_records.row_id) for row in rows
    ]
    mapped_or_quarantined(
        (
            [r for r in results if isinstance(r, Entry)],
            [r for r in results if isinstance(r, Invalid)],
        ),
        len(rows),
    )


@PROPERTY
@given(
    st.one_of(
        st.lists(maestra_rows, max_size=4).map(
            lambda rows: b"".join(
                render_part(
                    [{k: v for k, v in row.items() if isinstance(v, str)} for row in rows],
                    gzip=False,
                )
            )
        ),
        st.binary(max_size=80),
    ),
    json_values,
)
def test_maestra_any_export_gives_batches_or_a_clear_error(part: bytes, odd: Any) -> None:
    answers = iter(
        [
            {"status": "Success", "exportId": "e-1"},
            {
                "status": "Success",
                "exportResult": {"processingStatus": "Ready", "urls": ["https://files.test/1"]},
            },
        ]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "files.test":
            return httpx.Response(200, content=part)
        return json_answer(next(answers, odd))

    options = {
        "base_url": "https://maestra.test",
        "endpoint_id": "e",
        "secret_key": "k3y",
        "operation": "Export",
        "backfill": "1d",
    }
    batches_or_clear_error(lambda: poll(maestra.Maestra(), options, handler))


def test_the_properties_reach_both_outcomes() -> None:
    """The strategies are not so wild that every record is refused, nor so tame that none is."""
    good = {"id": 7, "timestamp": "2026-04-30T10:00:00Z"}
    bad = {"id": None, "timestamp": "0000-00-00 00:00:00"}
    entries, invalid = map_records([good, bad], fleetit.to_entry)
    assert [e.native_id for e in entries] == ["7"] and len(invalid) == 1
    assert NOW - timedelta(days=2) < entries[0].timestamp < NOW
