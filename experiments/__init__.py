"""Offline evaluation (splits, metrics), A/B assignment and analysis, the experiment runner."""
