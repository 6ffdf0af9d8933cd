"""Masking credentials in text: one rule for errors, vendor error text and every log line.

A secret is replaced by `***` wherever it appears as written, percent-encoded (a query string,
a form body) or JSON-escaped (a vendor echoing it in an error body, `/` written `\\/` too).
Mask a text whole BEFORE cutting it short: a secret straddling the cut would otherwise leave
its prefix behind, which the mask no longer recognises.

Values are registered process-wide with `register` (source options, headers given to
`SourceClient.set_credentials`, session tokens from `PollContext.add_secret`, every webhook's
secret, headers and URL tokens), and
`SecretFilter` masks them in every record logd's log handler writes, httpx's included.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

#: Shorter values are not masked: they would blank out ordinary words and digits.
MIN_LENGTH = 3
#: Registered values kept for the log filter; the oldest go first (session tokens rotate, and
#: one long expired is no longer worth a scan of every log line).
MAX_REGISTERED = 256

_registered: dict[str, None] = {}
_lock = threading.Lock()


@functools.lru_cache(maxsize=MAX_REGISTERED)
def forms(secret: str) -> tuple[str, ...]:
    """The ways `secret` shows up in text: as is, percent-encoded, JSON-escaped."""
    escaped = json.dumps(secret, ensure_ascii=False)[1:-1]
    found = {secret, quote(secret, safe=""), quote_plus(secret, safe=""), escaped}
    found.add(escaped.replace("/", "\\/"))
    return tuple(f for f in found if len(f) >= MIN_LENGTH)


def mask(text: str, secrets: Iterable[str]) -> str:
    """`text` with every form of every secret (3 characters or more) replaced by `***`."""
    if not text:
        return text
    found = [f for s in secrets if len(s) >= MIN_LENGTH for f in forms(s) if f in text]
    # Longest first: a secret that contains a shorter one must not leave its tail behind.
    for form in sorted(found, key=len, reverse=True):
        text = text.replace(form, "***")
    return text


def header_secrets(value: str) -> list[str]:
    """A credential header's value and what follows its scheme (`Bearer TOKEN`: TOKEN too, and
    each word of it), each a secret on its own: a receiver may echo the token alone."""
    _scheme, sep, rest = value.partition(" ")
    rest = rest.strip()
    if not (sep and rest):
        return [value]
    return list(dict.fromkeys([value, rest, *rest.split()]))


#: A URL path segment or query value this long may be a token (`/hooks/<token>`,
#: `?X-Signature=<hex>`): masked like a credential.
TOKEN_LENGTH = 16


def url_secrets(url: str, *, all_query: bool = False) -> list[str]:
    """What may authorize `url` by itself: its password, its query values (all, or only the
    token-long ones) and its token-long path segments. A signed URL is a credential."""
    import httpx  # only callers that already send HTTP get here

    parsed = httpx.URL(url)
    values = [parsed.password] if parsed.password else []
    values += [v for _, v in parsed.params.multi_items() if all_query or len(v) >= TOKEN_LENGTH]
    values += [part for part in parsed.path.split("/") if len(part) >= TOKEN_LENGTH]
    return values


def register(*values: str) -> None:
    """Add credentials to the process-wide set every log line is masked with."""
    with _lock:
        for value in values:
            if len(value) >= MIN_LENGTH:
                _registered.pop(value, None)
                _registered[value] = None
        while len(_registered) > MAX_REGISTERED:
            del _registered[next(iter(_registered))]


def registered() -> list[str]:
    """The registered credentials, oldest first."""
    with _lock:
        return list(_registered)


class SecretFilter(logging.Filter):
    """Masks registered credentials in a record's message, traceback and stack (never drops)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite `record` in place so no handler that follows can print a credential."""
        secrets = registered()
        if not secrets:
            return True
        message = record.getMessage()
        masked = mask(message, secrets)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask(record.exc_text, secrets)
        if record.stack_info:
            record.stack_info = mask(record.stack_info, secrets)
        return True
