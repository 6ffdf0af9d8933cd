"""Getting entries out of logd: webhook deliveries from the outbox (`webhooks`), their
signatures (`signing`), a verifying receiver for tests and the demo (`receiver`), and the
sinks deliveries go to (`sinks`)."""
