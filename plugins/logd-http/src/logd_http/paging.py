"""The next page's request, in each paging style, and the check that paging advances.

A next page is always asked of base_url's origin: a `next` URL in the body gives only its
query parameters (the configured path is kept), and a `Link` header's URL is followed
whole only when it has base_url's scheme, host and port (else, again, only its query).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from logd.errors import ProtocolError
from logd.plugin.http import SourceClient, redact_url

from .options import (
    CursorPaging,
    LinkPaging,
    NextURLPaging,
    OffsetPaging,
    PagePaging,
    PagingOptions,
    compiled,
)


@dataclass(frozen=True)
class PageRequest:
    """Where one page is asked for: a path under base_url (or a same-origin URL) and params."""

    target: str
    params: dict[str, Any] = field(default_factory=dict)

    def key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        """What makes two requests the same request."""
        return self.target, tuple(sorted((k, str(v)) for k, v in self.params.items()))


def first_request(paging: PagingOptions | None, path: str, params: dict[str, Any]) -> PageRequest:
    """The walk's first page: the configured parameters plus the style's starting point."""
    params = dict(params)
    style = paging.style if paging else None
    if isinstance(style, OffsetPaging):
        params[style.offset_param] = style.start
        params[style.limit_param] = style.limit
    elif isinstance(style, PagePaging):
        params[style.page_param] = style.first
        if style.size_param:
            params[style.size_param] = style.size
    return PageRequest(path, params)


def total_of(paging: PagingOptions | None, body: Any) -> int | None:
    """Records in all, when the style names where the answer says so."""
    style = paging.style if paging else None
    path = style.total if isinstance(style, OffsetPaging | PagePaging) else None
    if not path:
        return None
    value = compiled(path).search(body)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return int(value)
    except ValueError:
        return None


def next_request(
    paging: PagingOptions | None,
    client: SourceClient,
    request: PageRequest,
    response: httpx.Response,
    body: Any,
    records: list[Any],
) -> PageRequest | None:
    """The next page's request, or None when this page was the last."""
    style = paging.style if paging else None
    if style is None or not records:
        return None  # an empty page ends every walk
    params = dict(request.params)
    if isinstance(style, OffsetPaging):
        # Advance by what came, not by `limit`: a server may cap the page size below it.
        offset = int(params.get(style.offset_param, style.start)) + len(records)
        total = total_of(paging, body)
        if total is not None and offset >= total:
            return None
        params[style.offset_param] = offset
        return PageRequest(request.target, params)
    if isinstance(style, PagePaging):
        page = int(params.get(style.page_param, style.first))
        total = total_of(paging, body)
        if total is not None and (page - style.first + 1) * style.size >= total:
            return None
        if style.total_pages:
            pages = compiled(style.total_pages).search(body)
            if isinstance(pages, int) and not isinstance(pages, bool) and page >= pages:
                return None
        params[style.page_param] = page + 1
        return PageRequest(request.target, params)
    if isinstance(style, CursorPaging):
        token = compiled(style.path).search(body)
        if token is None or token == "" or token is False:
            return None
        if not isinstance(token, str | int):
            raise ProtocolError(f"cursor at `{style.path}` is a {type(token).__name__}")
        params[style.param] = token
        return PageRequest(request.target, params)
    if isinstance(style, NextURLPaging):
        url = compiled(style.path).search(body)
        if not url:
            return None
        if not isinstance(url, str):
            raise ProtocolError(f"next URL at `{style.path}` is a {type(url).__name__}")
        return PageRequest(request.target, client.query_params(url))
    if isinstance(style, LinkPaging):
        link = response.links.get(style.rel)
        if not link or not link.get("url"):
            return None
        url = urljoin(str(response.request.url), link["url"])
        query = client.query_params(url)
        if client.same_origin(url):
            parts = urlsplit(url)
            return PageRequest(urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")), query)
        return PageRequest(request.target, query)
    raise AssertionError(f"unknown paging style {style!r}")


class Progress:
    """Refuses a walk that does not advance: a request made twice, or the same page twice."""

    def __init__(self) -> None:
        self._asked: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        self._last_page: list[Any] | None = None

    def asking(self, request: PageRequest, url: str) -> None:
        """Record a request; `ProtocolError` naming the URL when this walk made it already."""
        key = request.key()
        if key in self._asked:
            raise ProtocolError(
                f"paging does not advance: {redact_url(url)} with "
                f"{_shown(request.params)} was already asked in this walk"
            )
        self._asked.add(key)

    def answered(self, records: list[Any], url: str) -> None:
        """Record a page; `ProtocolError` when it repeats the previous page exactly."""
        if records and records == self._last_page:
            raise ProtocolError(
                f"paging does not advance: {redact_url(url)} answered the same "
                f"{len(records)} records as the page before"
            )
        self._last_page = records


def _shown(params: dict[str, Any]) -> str:
    return "&".join(f"{k}={v}" for k, v in params.items()) or "no parameters"
