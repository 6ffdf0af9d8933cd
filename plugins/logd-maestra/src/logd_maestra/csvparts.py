"""Reading one export part as it downloads: bytes → gunzip if gzip → UTF-8 → `;` CSV rows.

Each stage pulls from the one before, so a part of any size costs about one network chunk,
one bounded piece of decompressed output and one CSV record of memory, never the whole file.
"""

from __future__ import annotations

import codecs
import csv
import zlib
from collections.abc import Iterable, Iterator

from logd import ProtocolError

GZIP_MAGIC = b"\x1f\x8b"
DELIMITER = ";"
TRANSACTION_ID = "OperationLogTransactionId"
#: Largest piece of decompressed output produced per step, so a highly compressed part (or a
#: gzip bomb) cannot balloon memory.
OUT_CHUNK = 256 * 1024
#: Request and response bodies are whole columns: the csv module's default 128 KiB field
#: limit would reject a large response body. The limit is process-wide, so only ever raise it.
FIELD_LIMIT = 64 * 1024 * 1024

if csv.field_size_limit() < FIELD_LIMIT:
    csv.field_size_limit(FIELD_LIMIT)


def gunzip_if_gzip(chunks: Iterable[bytes], *, part: str = "part") -> Iterator[bytes]:
    """The bytes of `chunks`, decompressed when they start with the gzip magic `1f 8b`."""
    it = iter(chunks)
    head = b""
    for chunk in it:
        head += chunk
        if len(head) >= len(GZIP_MAGIC):
            break
    if not head:
        return
    if not head.startswith(GZIP_MAGIC):
        yield head
        yield from it
        return
    yield from _gunzip(_prepend(head, it), part)


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _gunzip(chunks: Iterator[bytes], part: str) -> Iterator[bytes]:
    decompressor = zlib.decompressobj(wbits=31)
    in_member = True
    try:
        for chunk in chunks:
            data = chunk
            while data:
                if not in_member:
                    # A gzip file may hold several members back to back (`cat a.gz b.gz`);
                    # zero padding after the last one is harmless, anything else is not.
                    if not data.strip(b"\0"):
                        break
                    if not data.startswith(GZIP_MAGIC[:1]):
                        raise ProtocolError(f"{part}: data after the end of the gzip stream")
                    decompressor = zlib.decompressobj(wbits=31)
                    in_member = True
                out = decompressor.decompress(data, OUT_CHUNK)
                if out:
                    yield out
                if decompressor.eof:
                    data = decompressor.unused_data
                    in_member = False
                else:
                    data = decompressor.unconsumed_tail
        if in_member:
            tail = decompressor.flush()
            if tail:
                yield tail
            if not decompressor.eof:
                raise ProtocolError(f"{part}: gzip data ends early (truncated download?)")
    except zlib.error as exc:
        raise ProtocolError(f"{part}: not valid gzip: {exc}") from None


def decode_utf8(chunks: Iterable[bytes]) -> Iterator[str]:
    """Text from UTF-8 bytes split anywhere, without the leading byte-order mark."""
    # `utf-8-sig` drops one BOM at the very start only. Invalid bytes (a binary response body
    # logged by the vendor) become U+FFFD rather than losing the whole part.
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
    for chunk in chunks:
        text = decoder.decode(chunk)
        if text:
            yield text
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail


def split_lines(texts: Iterable[str]) -> Iterator[str]:
    """Lines ending in `\\n` (kept), from text split anywhere; the csv reader joins quoted ones."""
    # Only `\n` ends a line here: `str.splitlines` would also split at U+2028 and friends,
    # which may sit inside a quoted request body.
    pending = ""
    for text in texts:
        pending += text
        start = 0
        while (end := pending.find("\n", start)) != -1:
            yield pending[start : end + 1]
            start = end + 1
        pending = pending[start:]
    if pending:
        yield pending


def read_part(chunks: Iterable[bytes], *, part: str = "part") -> Iterator[dict[str, str]]:
    """Rows of one export part as `{column: value}`, keyed by its header row."""
    reader = csv.reader(
        split_lines(decode_utf8(gunzip_if_gzip(chunks, part=part))), delimiter=DELIMITER
    )
    header: list[str] | None = None
    try:
        for row in reader:
            if not row or row == [""]:
                continue
            if header is None:
                # A BOM that survived (one per part is expected; a second one is not) would
                # make the first column unrecognisable.
                header = [name.strip().lstrip("\ufeff") for name in row]
                if TRANSACTION_ID not in header:
                    raise ProtocolError(
                        f"{part}: header row has no {TRANSACTION_ID} column: "
                        f"{DELIMITER.join(header)[:200]!r}"
                    )
                continue
            if len(row) > len(header) and not any(row[len(header) :]):
                row = row[: len(header)]  # a trailing `;` on the line
            if len(row) != len(header):
                raise ProtocolError(
                    f"{part}, line {reader.line_num}: {len(row)} fields where the header "
                    f"has {len(header)}"
                )
            yield dict(zip(header, row, strict=True))
    except csv.Error as exc:
        raise ProtocolError(f"{part}, line {reader.line_num}: unreadable CSV: {exc}") from None
