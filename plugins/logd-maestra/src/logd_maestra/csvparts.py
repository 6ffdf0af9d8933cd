"""Reading one export part as it downloads: bytes → gunzip if gzip → UTF-8 → `;` CSV rows.

Each stage pulls from the one before, so a part of any size costs about one network chunk,
one bounded piece of decompressed output and one CSV record of memory, never the whole file.
Two caps keep that true whatever the file holds, each a `ProtocolError` naming the part, the
cap and the option to raise: `max_row_size` characters per CSV record (one endless line, or
an unclosed quote swallowing the rest of the file) and `max_part_size` bytes of decompressed
data (a gzip bomb). Every stage is linear in its input.
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
#: Default most characters in one CSV record (the `max_row_size` option).
MAX_ROW_SIZE = 4 * 1024 * 1024
#: Default most decompressed bytes in one part (the `max_part_size` option).
MAX_PART_SIZE = 1024 * 1024 * 1024
#: Request and response bodies are whole columns: the csv module's default 128 KiB field
#: limit would reject a large response body. The limit is process-wide, so only ever raise it;
#: records are capped before a field could reach it.
FIELD_LIMIT = 64 * 1024 * 1024

if csv.field_size_limit() < FIELD_LIMIT:
    csv.field_size_limit(FIELD_LIMIT)


def gunzip_if_gzip(
    chunks: Iterable[bytes], *, part: str = "part", max_bytes: int = MAX_PART_SIZE
) -> Iterator[bytes]:
    """The bytes of `chunks`, decompressed when they start with the gzip magic `1f 8b`.

    More than `max_bytes` of decompressed data is a `ProtocolError` (a plain part is bounded
    by the download's own time limit).
    """
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
    produced = 0
    for out in _gunzip(_prepend(head, it), part):
        produced += len(out)
        if produced > max_bytes:
            raise ProtocolError(
                f"{part}: decompresses to more than {max_bytes} bytes (max_part_size); "
                "raise max_part_size if parts this large are expected"
            )
        yield out


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


def split_lines(
    texts: Iterable[str], *, part: str = "part", max_length: int = MAX_ROW_SIZE
) -> Iterator[str]:
    """Lines ending in `\\n` (kept), from text split anywhere; the csv reader joins quoted ones.

    A line longer than `max_length` characters is a `ProtocolError`. Each piece of text is
    scanned once and the pieces of a long line are joined once: linear in the input.
    """
    # Only `\n` ends a line here: `str.splitlines` would also split at U+2028 and friends,
    # which may sit inside a quoted request body.
    pieces: list[str] = []  # the line so far, unjoined
    held = 0
    for text in texts:
        start = 0
        while (end := text.find("\n", start)) != -1:
            if pieces:
                pieces.append(text[start : end + 1])
                line, pieces, held = "".join(pieces), [], 0
            else:
                line = text[start : end + 1]
            if len(line) > max_length:
                raise _too_long(part, max_length)
            yield line
            start = end + 1
        if start < len(text):
            pieces.append(text[start:])
            held += len(text) - start
            if held > max_length:
                raise _too_long(part, max_length)
    if pieces:
        yield "".join(pieces)


def _too_long(part: str, max_length: int) -> ProtocolError:
    return ProtocolError(
        f"{part}: a CSV row is longer than {max_length} characters (max_row_size); raise "
        "max_row_size if the vendor's rows are really this large"
    )


def _capped_records(
    lines: Iterable[str], part: str, max_length: int, since_row: list[int]
) -> Iterator[str]:
    """`lines`, failing once the record being read (quoted newlines join lines) gets too long.

    `since_row[0]` counts characters handed out since the last complete row; the reader of
    the rows resets it.
    """
    for line in lines:
        since_row[0] += len(line)
        if since_row[0] > max_length:
            raise _too_long(part, max_length)
        yield line


def read_part(
    chunks: Iterable[bytes],
    *,
    part: str = "part",
    max_row_size: int = MAX_ROW_SIZE,
    max_part_size: int = MAX_PART_SIZE,
) -> Iterator[dict[str, str]]:
    """Rows of one export part as `{column: value}`, keyed by its header row.

    A record over `max_row_size` characters or a part decompressing to more than
    `max_part_size` bytes is a `ProtocolError` naming the part and the option.
    """
    since_row = [0]
    text = decode_utf8(gunzip_if_gzip(chunks, part=part, max_bytes=max_part_size))
    lines = split_lines(text, part=part, max_length=max_row_size)
    reader = csv.reader(_capped_records(lines, part, max_row_size, since_row), delimiter=DELIMITER)
    header: list[str] | None = None
    try:
        for row in reader:
            since_row[0] = 0
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
