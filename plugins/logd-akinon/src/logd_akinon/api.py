"""The three calls a poll makes: a page of `/logs`, a log file download, a log's line logs."""

from __future__ import annotations

from functools import partial
from typing import Any

from logd import Entry, Invalid, ProtocolError, map_records

from .options import AkinonOptions
from .records import LINE, decode_download, native_id, to_entry
from .session import Session

PAGE_SIZE = 100


def list_logs(session: Session, params: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """One page of `/logs` and whether another follows; a 404 is an empty page."""
    response = session.get("/logs", {**params, "limit": PAGE_SIZE}, allow_status={404})
    if response.status_code == 404:  # the vendor's way of saying "no results"
        return [], False
    body = session.client.json(response)
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise ProtocolError("Akinon /logs answer has no `results` list")
    results: list[dict[str, Any]] = body["results"]
    # `next` is a URL on whatever host the vendor names: only its presence is used, and the
    # next page is asked of base_url by number.
    more = bool(body.get("next")) if "next" in body else len(results) >= PAGE_SIZE
    return results, more and bool(results)


def log_page(
    session: Session, opts: AkinonOptions, flow: str, log_type: int, page: int
) -> tuple[list[dict[str, Any]], bool]:
    """Page `page` (from 1) of one flow's logs of one type, newest first."""
    params = {"projectid": opts.project_id, "flowId": flow, "page": page, "log_type": log_type}
    return list_logs(session, params)


def download(
    session: Session, opts: AkinonOptions, flow: str, record: dict[str, Any]
) -> dict[str, Any]:
    """The JSON file inside a main log's download (`DownloadError` when unreadable)."""
    params = {
        "id": record["id"],
        "flowId": flow,
        "projectid": opts.project_id,
        "projectslug": opts.project_slug,
    }
    return decode_download(session.get("/logs/download", params).text)


def line_logs(
    session: Session, opts: AkinonOptions, flow: str, record: dict[str, Any], main_log: str
) -> tuple[list[Entry], list[Invalid]]:
    """Every line log (log_type 3) of one main log, as entries linked to it, and the line
    logs that cannot be mapped (to quarantine)."""
    uuid = record.get("filename_uuid")
    if not uuid:
        raise ProtocolError("no `filename_uuid` to find its line logs by")
    entries: list[Entry] = []
    invalid: list[Invalid] = []
    page = 1
    while True:
        params = {
            "projectid": opts.project_id,
            "flowId": flow,
            "page": page,
            "log_type": LINE,
            "original_filename_uuid": uuid,
        }
        results, more = list_logs(session, params)
        good, bad = map_records(
            results,
            partial(to_entry, log_type=LINE, flow_id=flow, naive_tz=opts.tz, main_log=main_log),
            native_id=partial(native_id, log_type=LINE),
        )
        entries += good
        invalid += bad
        if not more:
            return entries, invalid
        page += 1
