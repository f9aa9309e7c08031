//! Settings and profiles: `settings.json`, environment overrides, `--set`, `profiles/*.json`.
