"""Export parts whatever they hold: an endless line, an unclosed quote, a gzip bomb."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zlib
from collections.abc import Iterator

import pytest
from logd_maestra import MaestraOptions
from logd_maestra.csvparts import read_part, split_lines

from logd import ProtocolError

HEADER = b"OperationLogTransactionId;OperationLogRequestBody\r\n"


def gzipped(pieces: Iterator[bytes]) -> Iterator[bytes]:
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    for piece in pieces:
        out = packer.compress(piece)
        if out:
            yield out
    yield packer.flush()


def test_an_endless_line_is_one_error_naming_the_part_and_the_option() -> None:
    chunks = [HEADER, *[b"x" * 1000] * 50]
    with pytest.raises(ProtocolError) as info:
        list(read_part(chunks, part="part 2/3 of export 7", max_row_size=10_000))
    assert str(info.value) == (
        "part 2/3 of export 7: a CSV row is longer than 10000 characters (max_row_size); "
        "raise max_row_size if the vendor's rows are really this large"
    )


def test_an_unclosed_quote_swallowing_many_lines_is_capped_too() -> None:
    chunks = [HEADER, b'1;"never closed\r\n', *[b"more text\r\n"] * 5000]
    with pytest.raises(ProtocolError, match="longer than 10000 characters"):
        list(read_part(chunks, part="part 1/1", max_row_size=10_000))


def test_rows_under_the_cap_pass_whatever_the_chunking() -> None:
    body = "y" * 9000
    data = HEADER + f'1;"{body}"\r\n2;short\r\n'.encode()
    rows = list(read_part((data[i : i + 7] for i in range(0, len(data), 7)), max_row_size=10_000))
    assert [r["OperationLogRequestBody"] for r in rows] == [body, "short"]


def test_split_lines_joins_a_long_line_once() -> None:
    # Text arriving in many small pieces: each piece is scanned once and kept, not re-joined.
    pieces = ["a" * 10] * 1000 + ["\nb\n"]
    assert [len(line) for line in split_lines(pieces)] == [10_001, 2]


def test_a_gzip_bomb_stops_at_max_part_size() -> None:
    row = b"1;" + b"x" * 1000 + b"\r\n"
    bomb = gzipped(iter([HEADER] + [row * 1000] * 3))  # 3 MB of rows
    with pytest.raises(ProtocolError) as info:
        list(read_part(bomb, part="part 1/1", max_part_size=1024 * 1024))
    assert "part 1/1: decompresses to more than 1048576 bytes (max_part_size)" in str(info.value)


def test_the_caps_are_source_options() -> None:
    opts = MaestraOptions.model_validate(
        {
            "endpoint_id": "e",
            "secret_key": "k",
            "operation": "o",
            "max_row_size": "64KiB",
            "max_part_size": "2GiB",
        }
    )
    assert (opts.max_row_size, opts.max_part_size) == (65536, 2 * 1024**3)


def test_peak_memory_stays_bounded_for_a_part_with_one_huge_line() -> None:
    script = textwrap.dedent(
        """
        import resource, zlib
        from logd import ProtocolError
        from logd_maestra.csvparts import read_part

        packer = zlib.compressobj(1, zlib.DEFLATED, 31)
        head = b"OperationLogTransactionId;OperationLogRequestBody\\r\\n1;"
        line = b"z" * (1 << 20)
        part = packer.compress(head) + b"".join(packer.compress(line) for _ in range(60))
        part += packer.flush()  # 60 MB of one line, gzipped to ~60 KB

        def chunks():
            for at in range(0, len(part), 16384):
                yield part[at : at + 16384]

        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            list(read_part(chunks(), part="part 1/1"))
        except ProtocolError as exc:
            print(exc)
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    message, grown_mb = done.stdout.strip().splitlines()
    assert "longer than 4194304 characters (max_row_size)" in message
    assert int(grown_mb) < 40
