"""Checks on `[[webhooks]]` tables that need more than one key, or the rest of the config.

Each problem is one line naming its key path (`webhooks[0].url`), like every config error.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from logd.delivery.signing import RESERVED_HEADERS, standard_secret_bytes
from logd.errors import QueryError
from logd.store.query_language import parse

if TYPE_CHECKING:
    from logd.config.settings import Settings, WebhookConfig


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1: hosts whose traffic never leaves the machine."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def url_problem(url: str, allow_insecure: bool) -> str | None:
    """Why `url` cannot be a webhook endpoint, or None when it can."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        return f"not a valid URL: {exc}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an https:// URL with a host"
    if parts.username or parts.password:
        return "must not hold credentials; use `headers` or `secret`"
    if parts.scheme == "http" and not allow_insecure and not is_loopback(parts.hostname):
        return (
            "http:// is only allowed for loopback hosts (127.0.0.1, ::1, localhost); "
            "use https://, or set allow_insecure = true"
        )
    return None


def match_problem(match: str) -> str | None:
    """Why `match` is not a search expression (`logd query --fts`'s language), or None."""
    try:
        node = parse(match)
    except QueryError as exc:
        return str(exc)
    if node is None:  # it would send every failure: say so rather than guess
        return "has no word to search for (a letter or a digit); leave `match` out to send all"
    return None


def webhook_problems(settings: Settings) -> list[str]:
    """Every problem with the `[[webhooks]]` tables, one line each."""
    return hook_problems(settings.webhooks, {s.name for s in settings.sources})


def hook_problems(hooks: Sequence[WebhookConfig | None], source_names: set[str]) -> list[str]:
    """The cross-key problems of each webhook that validated (None: one that did not)."""
    problems: list[str] = []
    seen: dict[str, int] = {}
    for i, hook in enumerate(hooks):
        if hook is None:
            continue
        key = f"webhooks[{i}]"
        if hook.name in seen:
            first = seen[hook.name]
            problems.append(f"{key}.name: {hook.name!r} is already used by webhooks[{first}]")
        seen.setdefault(hook.name, i)
        why = url_problem(hook.url, hook.allow_insecure)
        if why:
            problems.append(f"{key}.url: {why}")
        for name in hook.sources or ():
            if name not in source_names:
                known = ", ".join(sorted(source_names)) or "none"
                problems.append(f"{key}.sources: no source named {name!r}; configured: {known}")
        if hook.match is not None:
            why = match_problem(hook.match)
            if why:
                problems.append(f"{key}.match: {why}")
        if hook.signature == "standard-webhooks":
            try:
                standard_secret_bytes(hook.secret.get_secret_value())
            except ValueError as exc:
                problems.append(f"{key}.secret: {exc}")  # the message never quotes the secret
        for header in hook.headers:
            if header.lower() in RESERVED_HEADERS:
                problems.append(f"{key}.headers: {header!r} is set by logd; it cannot be replaced")
    return problems
