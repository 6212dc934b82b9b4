//! The measurement policy (`ra_config` / `dynamic_config.json`): parsing and evaluation.
