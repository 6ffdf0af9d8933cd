"""Status rules and field mapping on single records, without HTTP."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from logd_http.options import RecordsOptions, StatusRule
from logd_http.records import RecordMapper, status_of

from logd.plugin.entries import Status


def rules(*specs: dict[str, Any]) -> list[StatusRule]:
    return [StatusRule.model_validate(s) for s in specs]


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"state": "Failed"}, Status.FAILURE),
        ({"state": "done"}, Status.SUCCESS),
        ({"state": "odd"}, Status.PENDING),
        ({"state": "done", "code": "502"}, Status.FAILURE),  # a numeric string is a number
        ({"state": "done", "code": "n/a"}, Status.SUCCESS),  # cannot compare: does not hold
    ],
)
def test_rules_in_order_with_a_computed_path_and_a_catch_all(
    record: dict[str, Any], expected: Status
) -> None:
    order = rules(
        {
            "path": "contains(['failed', 'Failed'], state)",
            "op": "==",
            "value": True,
            "status": "failure",
        },
        {"path": "code", "op": ">=", "value": 500, "status": "failure"},
        {"path": "state", "op": "in", "value": ["done", "ok"], "status": "success"},
        {"path": "@", "op": "not empty", "status": "pending"},
    )
    assert status_of(order, record) is expected


def test_no_rule_means_success_and_false_is_not_empty() -> None:
    assert status_of([], {"x": 1}) is Status.SUCCESS
    [rule] = rules({"path": "ok", "op": "empty", "status": "failure"})
    assert status_of([rule], {"ok": False}) is Status.SUCCESS
    assert status_of([rule], {"ok": []}) is Status.FAILURE


def test_field_values_become_text() -> None:
    spec = RecordsOptions.model_validate(
        {
            "path": "@",
            "id": "n",
            "timestamp": {"path": "t", "format": "epoch_s"},
            "message": "detail",
            "entity_id": "owner",
        }
    )
    entry = RecordMapper(spec, []).entry(
        {"n": 42, "t": 1767225600, "detail": {"a": [1, "b"]}, "owner": 7}, datetime.now(UTC)
    )
    assert (entry.native_id, entry.message, entry.entity_id) == ("42", '{"a":[1,"b"]}', "7")
    assert entry.timestamp == datetime(2026, 1, 1, tzinfo=UTC)
