"""The words of an entry's JSON that go into the full-text index, for every store backend.

Kept out of the provider API (`logd.plugin.entries`): it runs for every value of every record a
backfill stores, so it is written for speed (exact-type dispatch, inlined checks), and what
the index holds is the store's business.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any


def searchable_text(value: Any, *, known: Iterable[str | None] = ()) -> str:
    """Flatten the scalar values of a JSON document into one line of words for the FTS index.

    Only what is worth searching goes in. Keys are left out: every record has an `error` key,
    so indexing keys would make a search for "error" match everything. Timestamps are left
    out (`--since`/`--until` search by time, and their digits would fill the index), and so
    is a value seen before in the document or given in `known` (the entry's message and
    error, which the index holds in columns of their own).
    """
    # An insertion-ordered dict is the set of words: the first sighting keeps its place.
    words: dict[str, None] = dict.fromkeys(k for k in known if k)
    given = len(words)
    _collect(value, words)
    return " ".join(list(words)[given:]) if given else " ".join(words)


def _is_timestamp(text: str) -> bool:
    # "2024-05-01", "2024-05-01T10:00:00.123+02:00", "2024-05-01 10:00": cheap checks only.
    return 10 <= len(text) <= 35 and text[4] == "-" and text[7] == "-" and text[:4].isdigit()


def _collect(value: Any, words: dict[str, None]) -> None:
    # Exact-type dispatch first, and a dict's scalars handled in its own loop: this runs for
    # every value of every record a backfill stores (4.1 µs a FleetIT record before, 2.7 now).
    kind = type(value)
    if kind is dict:
        for item in value.values():
            kind = type(item)
            if kind is str:
                # _is_timestamp, inlined: this runs for every string of every record.
                if item and not (
                    10 <= len(item) <= 35
                    and item[4] == "-"
                    and item[7] == "-"
                    and item[:4].isdigit()
                ):
                    words[item] = None
            elif kind is int:
                words[str(item)] = None
            elif item is not None and kind is not bool:
                _collect(item, words)
    elif kind is list:
        for item in value:
            _collect(item, words)
    elif kind is str:
        if value and not _is_timestamp(value):
            words[value] = None
    elif value is None or kind is bool:
        return
    elif isinstance(value, str):
        if value and not _is_timestamp(value):
            words[value] = None
    elif isinstance(value, int | float):
        words[str(value)] = None
    elif isinstance(value, Mapping):
        for item in value.values():
            _collect(item, words)
    elif isinstance(value, list | tuple):
        for item in value:
            _collect(item, words)
    else:
        text = json.dumps(value, default=str)
        if not _is_timestamp(text):
            words[text] = None
