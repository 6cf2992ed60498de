"""Feature jobs: event logs to interaction matrices and feature tables; data loaders; the synthetic marketplace."""
