"""Learning-to-rank models for product search."""
