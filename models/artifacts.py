"""One way for every model family (recommenders, session models) to build a model by name, check a saved
artifact and load it back, so the families differ only in their classes and artifact format."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import joblib


def make_model(classes: Mapping[str, type], kind: str, name: str, params: dict[str, Any]):
    """A fresh, unfitted model; unknown names and parameters raise with the valid choices."""
    try:
        cls = classes[name]
    except KeyError:
        raise ValueError(f"unknown {kind} {name!r}; choose from {sorted(classes)}") from None
    accepted = inspect.signature(cls).parameters
    open_ended = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
    if not open_ended and (unknown := sorted(set(params) - set(accepted))):
        raise ValueError(f"{kind} {name!r} has no parameter {unknown}; choose from {sorted(accepted)}")
    for key, value in params.items():  # `--param k=abc` failed inside fit, comparing 'abc' with a number
        default = accepted[key].default if key in accepted else None
        if isinstance(value, str) and isinstance(default, int | float) and not isinstance(default, bool):
            raise ValueError(f"{kind} {name!r} parameter {key} takes a number, not {value!r}")
    return cls(**params)


def read_artifact(path: str | Path, artifact_format: str, kind: str) -> dict[str, Any]:
    """The saved dict, after checking it is an artifact of this format (pickle underneath: trusted
    artifacts only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no saved {kind} at {path}")
    artifact = joblib.load(path)
    if not isinstance(artifact, dict) or artifact.get("format") != artifact_format:
        raise ValueError(f"{path} is not a CrossCart {kind} artifact ({artifact_format})")
    return artifact


def load_model(classes: Mapping[str, type], kind: str, path: str | Path, artifact_format: str):
    """Load any model of the family written by its `save`."""
    artifact = read_artifact(path, artifact_format, kind)
    cls = {c.__name__: c for c in classes.values()}.get(artifact["class"])
    if cls is None:
        raise ValueError(f"{path}: unknown {kind} class {artifact['class']!r}")
    return cls._from_artifact(artifact)
