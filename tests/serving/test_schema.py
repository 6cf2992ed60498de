"""Property-based API testing with schemathesis against the app's own OpenAPI schema.

Every operation is called with generated valid and invalid requests as an admin (the role that reaches
everything), and again as a shopper, a merchant and a marketer (whose refusals and object-level checks must
be documented answers too); no answer may be a server error or break the documented status codes and
schemas.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig

from commerce.db import Base, make_engine, make_session_factory, transaction
from commerce.services.access import create_api_key
from crosscart.settings import Settings
from serving.app import create_app
from tests.serving.conftest import IDENTITY_KEY, ScriptedSource, TinyRecommender, seed_marketplace

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


_DIR = Path(tempfile.mkdtemp(prefix="crosscart-schema-"))
_FACTORY = make_session_factory(make_engine(f"sqlite:///{_DIR / 'api.db'}"))
APP = create_app(
    Settings(data_dir=_DIR, identity_key=IDENTITY_KEY, rate_limit_per_minute=1_000_000),
    session_factory=_FACTORY,
    model_source=ScriptedSource(versions={"1": TinyRecommender({"p05": 1.0, "p06": 0.5}, {"s1"})}, alias="1"),
    uplift_source=ScriptedSource(),
    delivery_source=ScriptedSource(),
    start_background=False,
)
# Examples and fuzzing only: the coverage phase's exhaustive negative cases (already covered by FastAPI's
# validation) would triple the run time.
CONFIG = SchemathesisConfig.from_dict({"phases": {"coverage": {"enabled": False}}})
schema = schemathesis.openapi.from_asgi("/openapi.json", APP, config=CONFIG)  # needs no database


ROLES = {"admin": {}, "shopper": {"shopper_id": "s1"}, "merchant": {"merchant_id": "m1"}, "marketer": {}}


@pytest.fixture(scope="module")
def api_keys(empty_mlflow_db):
    """Seed the app's database once, give it an empty MLflow registry (a missing one is a 503 by design)
    and return a key per role."""
    shutil.copy(empty_mlflow_db, _DIR / "mlflow.db")
    Base.metadata.create_all(_FACTORY.kw["bind"])
    seed_marketplace(_FACTORY)
    with transaction(_FACTORY) as s:
        keys = {role: create_api_key(s, role, **binding)[1] for role, binding in ROLES.items()}
    APP.state.serving.load_once()
    yield keys
    _FACTORY.kw["bind"].dispose()
    shutil.rmtree(_DIR, ignore_errors=True)


# The role parameter gives every operation's item its own id ("[GET /health][admin]"): without it all
# share one, and pytest-xdist, which schedules by id, ran one operation of 77 under `make test`.
@pytest.mark.parametrize("role", ["admin"])
@schema.parametrize()
@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_conforms_to_its_schema(case, api_keys, role):
    case.call_and_validate(headers={"Authorization": f"Bearer {api_keys[role]}"}, checks=CHECKS)


@pytest.mark.parametrize("role", ["shopper", "merchant", "marketer"])
@schema.parametrize()
@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_conforms_to_its_schema_for_other_roles(case, api_keys, role):
    case.call_and_validate(headers={"Authorization": f"Bearer {api_keys[role]}"}, checks=CHECKS)
