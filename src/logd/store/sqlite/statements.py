"""Lists of values bound to statements whose text does not depend on how many there are.

Python's sqlite3 keeps the last 128 statements a connection prepared, by their SQL text, and
a prepared statement holds its program, a slot per parameter and a copy of each value last
bound to it (until the next call binds others). An `IN (?, ?, …)` written for each list's
length is a new statement for every length a backfill meets, and the cache keeps them all:
the lookup of a batch's stored rows met 43 lengths from 100 to 5,100 ids in a 300k-record
FleetIT backfill (batches that piled up are committed together), ~20 MB of SQLite's heap
held to the end. `chunks` cuts a list into lists of one length, the last padded with NULL,
which `IN` never matches: each query is then one prepared statement, whatever the batch.
A multi-row INSERT cannot be padded, so `row_counts` cuts a batch into a few fixed sizes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

#: Values bound per `IN` list (SQLite before 3.32 allowed 999 variables per statement).
IN_CHUNK = 500
#: `(?, ?, …)` of IN_CHUNK placeholders.
IN_LIST = "(" + ", ".join("?" * IN_CHUNK) + ")"


def chunks(values: Sequence[T]) -> Iterator[list[T | None]]:
    """`values` in lists of exactly IN_CHUNK for IN_LIST, the last padded with None (NULL);
    nothing for no values."""
    for start in range(0, len(values), IN_CHUNK):
        chunk: list[T | None] = list(values[start : start + IN_CHUNK])
        chunk += [None] * (IN_CHUNK - len(chunk))
        yield chunk


def row_counts(total: int, most: int) -> Iterator[int]:
    """Rows per multi-row INSERT for `total` rows: `most` at a time, then the rest in powers
    of two, largest first. A connection then prepares at most `most`'s bit length + 1 INSERT
    shapes (10 for 500 rows), each holding its last rows' values, where one per remainder
    could be `most` of them."""
    left = total
    while left >= most:
        yield most
        left -= most
    while left:
        size = 1 << (left.bit_length() - 1)  # the highest power of two in what is left
        yield size
        left -= size
