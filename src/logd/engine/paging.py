"""Paging that does not advance: the checks every batch of a poll passes, whatever the provider.

A vendor whose `next` link keeps pointing at the same offset, that ignores the page number,
or that answers empty pages while saying there is more, would keep a poll walking forever.
Providers follow the vendor's paging as documented; the engine checks that it moves:

- a page with the same entries (same native ids, in order) and the same cursor as the page
  before it is the same page again (batches of `pages = 0`, such as records re-fetched by
  id, are not pages and are not compared);
- empty pages that say there is more: batches in a row that hold no entries, consulted no
  stored ids (a page of records already stored is progress, an empty page is not) and leave
  the cursor where it was, while the provider says the vendor promised more (`Batch.more`):
  `EMPTY_RUN` of them; when the provider does not say (`more` is None), `EMPTY_RUN_UNSAID`
  such batches that each cost a GET (a backstop: a run of empty sections or scopes, each
  complete, looks the same from here);
- a page that brings nothing new to this poll: every record on it (and every stored id the
  provider asked about for it) was already handed over by an earlier page of this poll, more
  than the one-record overlap some vendors put between pages (Pegasus modifications repeat a
  page's last item first on the next). A page that starts over with a cursor that still
  moves (an offset counted past the repeat, a resume point) passes the first check and not
  this one; records stored by earlier polls are progress (an idle poll), not repeats;
- more than the source's `max_pages` pages in one poll is a walk that does not end.

The HTTP client adds the fourth check (`SourceClient.repeat_limit`): the same GET asked again
and again within one poll. Each check stops the poll with a `PagingError` naming the last
request; batches committed before it are kept, the offending batch and its cursor are not,
so the next poll starts from the last good cursor.

Everything here is per batch: a few comparisons, never a pass over the records unless the
cheap ones already match.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from logd.errors import SourceError
from logd.plugin.entries import Batch, Entry

#: Record ids of the latest pages kept to spot a page that repeats them (see PagingGuard).
HANDED = 50_000
#: Empty pages in a row, each with the vendor's word that more follow, that stop a poll. One
#: or two happen when records are deleted while offsets are paged; five in a row do not.
EMPTY_RUN = 5
#: The same for providers that do not say (`Batch.more` None): a high bar, since a series of
#: empty listings each complete (Akinon's flows and log types, Pegasus's sections) looks alike.
EMPTY_RUN_UNSAID = 200


class PagingError(SourceError):
    """The vendor's paging did not advance; the poll stopped."""


class PagingGuard:
    """Checks each batch of one poll, in yield order, before it is committed."""

    def __init__(
        self,
        *,
        max_pages: int,
        last_request: Callable[[], str],
        gets: Callable[[], int],
    ) -> None:
        self.max_pages = max_pages
        self._last_request = last_request
        self._gets = gets
        self.pages = 0
        #: Stored ids the provider asked about since the last batch (`ctx.known_ids`).
        self.consulted = 0
        #: Of those, the ids an earlier page of this poll handed over (`consult`).
        self.repeated = 0
        # Hashes of the native ids the last pages of this poll handed over: ints, not the
        # strings, and at most HANDED ids (a window, oldest page out first), so that a 1M-record
        # backfill does not hold 1M of them (~70 MB); a walk that loops over more than that
        # many records is stopped by `max_pages`. A collision can only hide a repeat, never
        # fake one unless a whole page collides.
        self._handed: dict[int, int] = {}
        self._window: deque[list[int]] = deque()
        self._held = 0
        self._cursor: bytes | None = None
        self._entries: Sequence[Entry] = ()
        self._empty = 0
        self._gets_before = 0

    def consult(self, found: set[str]) -> None:
        """Note the stored ids a provider's `known_ids` question found, before its next batch."""
        self.consulted += len(found)
        handed = self._handed
        self.repeated += sum(1 for i in found if hash(i) in handed)

    def check(self, batch: Batch) -> None:
        """Raise `PagingError` when `batch` shows the walk is not advancing."""
        self.pages += batch.pages
        if self.pages > self.max_pages:
            raise self._error(
                f"more than max_pages ({self.max_pages}) pages in one poll; raise `max_pages` "
                "for this source if it really holds that much"
            )
        if not batch.pages:
            return  # not a page of a listing (a follow-up fetched by id): nothing to compare
        cursor = _fingerprint(batch.cursor)
        same_cursor = cursor == self._cursor
        entries = batch.entries
        gets, consulted, repeated = self._gets(), self.consulted, self.repeated
        spent_gets = gets - self._gets_before
        self._gets_before, self.consulted, self.repeated = gets, 0, 0
        if entries:
            self._empty = 0
            previous = self._entries
            if (
                same_cursor
                and len(entries) == len(previous)
                and entries[0].native_id == previous[0].native_id
                and entries[-1].native_id == previous[-1].native_id
                and [e.native_id for e in entries] == [e.native_id for e in previous]
            ):
                raise self._error("the same page came back again")
        elif same_cursor and not consulted and (batch.more or (batch.more is None and spent_gets)):
            self._empty += 1
            limit = EMPTY_RUN if batch.more else EMPTY_RUN_UNSAID
            if self._empty >= limit:
                raise self._error(f"{self._empty} empty pages in a row that say there is more")
        else:
            self._empty = 0
        self._check_news(entries, consulted, repeated)
        # A reference, not a copy: the previous batch is compared only when the cheap checks
        # (count, first and last id) already match.
        self._entries = entries
        self._cursor = cursor

    def _check_news(self, entries: Sequence[Entry], consulted: int, repeated: int) -> None:
        """Raise when a page holds nothing this poll had not handed over already."""
        handed = self._handed
        hashes = [hash(e.native_id) for e in entries]
        new = sum(1 for h in hashes if h not in handed)
        repeats = len(hashes) - new + repeated
        # Stored ids that no page of this poll handed over are records of earlier polls: an
        # idle poll walking known records is progress, not a repeat.
        if not new and consulted == repeated and repeats > 1:
            raise self._error(
                f"a page repeated {repeats} records an earlier page of this poll already "
                "handed over, and nothing new"
            )
        for h in hashes:
            handed[h] = handed.get(h, 0) + 1
        self._window.append(hashes)
        self._held += len(hashes)
        while self._held > HANDED and len(self._window) > 1:
            old = self._window.popleft()
            self._held -= len(old)
            for h in old:
                left = handed[h] - 1
                if left:
                    handed[h] = left
                else:
                    del handed[h]

    def _error(self, what: str) -> PagingError:
        return PagingError(
            f"paging does not advance: {what}; last request {self._last_request()}; "
            "the poll stopped and what it stored is kept"
        )


def _fingerprint(cursor: Any) -> bytes:
    """The cursor as sorted JSON, so that an equal cursor given as a new object compares equal."""
    return orjson.dumps(cursor, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)
