"""The leases a daemon holds while it polls: renewed by a heartbeat, so a short lease never
lapses under a live poll, and a crashed daemon's sources are free `lease_ttl` later.

    keeper = LeaseKeeper(store, holder=daemon_id, ttl=30.0)
    keeper.start(stop)                       # renews every ttl/3 seconds
    lease = keeper.claim("source:fleet")     # None: another daemon holds it
    ...                                      # commit batches fenced by `lease`
    keeper.release(lease)

A renewal keeps the lease's fencing token (same holder), so batches fenced by the lease taken
at the start of a poll still commit. A renewal that finds the lease gone (this daemon was
stopped long enough for it to lapse and another took it) drops it: the poll's next commit is
refused (`LeaseLost`) and writes nothing.
"""

from __future__ import annotations

import logging
import threading

from logd.errors import StoreError
from logd.store.interface import Lease, Store

log = logging.getLogger("logd.daemon")


class LeaseKeeper:
    """Claims, renews and releases the leases of one daemon (`holder`) on one store."""

    def __init__(self, store: Store, *, holder: str, ttl: float) -> None:
        self.store, self.holder, self.ttl = store, holder, ttl
        self._held: dict[str, Lease] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def claim(self, name: str) -> Lease | None:
        """Take lease `name` for `ttl` seconds and keep renewing it; None while another
        holder's has not expired. Raises StoreError."""
        lease = self.store.claim_lease(name, self.holder, self.ttl)
        if lease is not None:
            with self._lock:
                self._held[name] = lease
        return lease

    def release(self, lease: Lease) -> None:
        """Stop renewing `lease` and give it up (a store fault: it lapses by itself)."""
        with self._lock:
            self._held.pop(lease.name, None)
        try:
            self.store.release_lease(lease)
        except StoreError as exc:
            log.warning("lease %s not released (it lapses in %gs): %s", lease.name, self.ttl, exc)

    def held(self) -> list[Lease]:
        """The leases held now."""
        with self._lock:
            return list(self._held.values())

    def renew(self) -> None:
        """Renew every held lease once (the heartbeat's step)."""
        for lease in self.held():
            try:
                renewed = self.store.claim_lease(lease.name, self.holder, self.ttl)
            except StoreError as exc:  # tried again at the next beat, well within the ttl
                log.warning("lease %s not renewed: %s", lease.name, exc)
                continue
            with self._lock:
                if lease.name not in self._held:
                    continue  # released meanwhile
                if renewed is None or renewed.token != lease.token:
                    log.warning("lease %s passed to another daemon", lease.name)
                    self._held.pop(lease.name, None)
                else:
                    self._held[lease.name] = renewed

    def start(self, stop: threading.Event) -> None:
        """Renew every `ttl / 3` seconds until `stop` is set."""

        def beat() -> None:
            while not stop.wait(self.ttl / 3):
                self.renew()

        self._thread = threading.Thread(target=beat, name="lease renewal", daemon=True)
        self._thread.start()
