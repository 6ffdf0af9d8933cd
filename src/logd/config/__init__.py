"""The TOML configuration: `settings` (pydantic models and loading), `paths` (where the
config file and the store are, and reading TOML), `webhooks` (checks across `[[webhooks]]`
tables) and `reference` (the configuration reference generated from the models)."""
