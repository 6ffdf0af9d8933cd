"""Where entries live: the search language users type (`query_language`, parsed once for
every backend) and the SQLite store (`sqlite`)."""
