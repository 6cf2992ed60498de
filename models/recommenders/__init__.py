"""Recommenders sharing one interface: `models.recommenders.base.Recommender`."""
