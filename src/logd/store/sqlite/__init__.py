"""The SQLite store: one file with entries, FTS5 search, cursors, poll runs, the outbox and
schedule rows. `store` is the read-write store, `reader` opens one read-only, `migrations`
versions its schema, `rows`/`search` turn entries into rows and filters into SQL, `outbox`
and `retention` are the queue and the clean-up."""
