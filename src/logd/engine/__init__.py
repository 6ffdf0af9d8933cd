"""Polling: `poller` runs each source's provider and commits what it yields with its cursor;
`prefetch` fetches a provider's next pages while the store commits; `paging` guards every
batch against paging that does not advance; `heap` sets the garbage collector for processes
that poll (a backfill allocates per record)."""
