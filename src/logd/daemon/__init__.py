"""`logd run`: the long-running service (`service`), its scheduler heartbeat and systemd
watchdog (`health`, `notify`), Prometheus metrics (`metrics`) and the one-daemon-per-store
lock (`instance_lock`)."""
