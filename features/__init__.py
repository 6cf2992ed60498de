"""Feature jobs: event logs to interaction matrices and feature tables; loaders; the synthetic marketplace."""
