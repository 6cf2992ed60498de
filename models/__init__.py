"""Estimators: recommenders and uplift models, one small common interface each."""
