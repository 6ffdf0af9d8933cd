"""Getting entries out of logd: the outbox's deliverer (`deliverer`: a lane per sink, claims,
retries), the sinks deliveries go to (`sinks`: kinds registered by `register_sinks`, logd's
own `webhook` among them), the one place commands wire them (`wiring`), webhook signatures
(`signing`) and a verifying receiver for tests and the demo (`receiver`). `webhooks` keeps
the names callers used before sinks."""
