"""A small Dassl-compatible core: config, data, training loop, checkpoints, logging."""
