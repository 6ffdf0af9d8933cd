"""The PostgreSQL store: one database shared by several `logd run` instances."""
