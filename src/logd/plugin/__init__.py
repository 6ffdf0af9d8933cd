"""Everything a provider plugin imports, and how logd finds and loads plugins.

- `hookspecs`: the hooks a plugin implements (`register_providers`, `register_sinks`, …)
- `provider`: `Provider`, `ProviderOptions`, `PollContext` (what a poll is handed)
- `entries`: `Entry`, `Batch`, `map_records` (the normalized record and its quarantine)
- `http`, `deadline`, `ratelimit`, `auth`: the one HTTP client a source gets, its whole-request
  deadline, its request budget and its login helpers
- `simulator`, `testing`, `contract`: local vendor simulators and the provider contract suite
- `manager`, `entrypoints`: loading plugins from the `logd` entry-point group

Plugins usually import the same names from `logd` itself, which re-exports them lazily.
"""
