"""The `logd` command line, the only package that prints: `main` (the click group and its
commands), `options` (shared options), and one module per command that needs more than a
few lines (`query`, `status`, `stats`, `sync`, `webhooks`, `demo`, `simulate`), with
`output` and `table` turning rows into text. Imports here stay light: `logd query` must not
load HTTP, pydantic or plugins."""
