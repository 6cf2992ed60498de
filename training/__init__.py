"""Pipelines that fit, evaluate, log to MLflow and register models."""
