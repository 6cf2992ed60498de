"""The OpenAPI contract reads well in generated clients: unique, meaningful operation ids and tags on every
operation, and a Python client generated from the schema builds and imports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

METHODS = {"get", "post", "put", "patch", "delete"}


def _operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


def test_every_operation_has_a_stable_readable_id_and_a_tag(client):
    schema = client.get("/openapi.json").json()
    ids = [op["operationId"] for _, _, op in _operations(schema)]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for path, method, op in _operations(schema):
        assert re.fullmatch(r"[a-z][a-z0-9_]{2,60}", op["operationId"]), (method, path, op["operationId"])
        assert "_v1_" not in op["operationId"] and not op["operationId"].endswith(("_get", "_post"))
        assert op.get("tags"), (method, path)
    by_path = {(p, m): op["operationId"] for p, m, op in _operations(schema)}
    assert by_path[("/v1/shoppers/{shopper_id}/recommendations", "get")] == "shopper_recommendations"


@pytest.mark.skipif(shutil.which("openapi-python-client", path=str(Path(sys.executable).parent)) is None,
                    reason="openapi-python-client is a dev dependency; install the dev extras")  # fmt: skip
def test_a_generated_python_client_builds_and_imports(client, tmp_path):
    spec = tmp_path / "openapi.json"
    spec.write_text(json.dumps(client.get("/openapi.json").json()))
    tool = Path(sys.executable).parent / "openapi-python-client"
    command = [str(tool), "generate", "--path", str(spec), "--output-path", str(tmp_path / "client")]
    done = subprocess.run([*command, "--overwrite"], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout, done.stdout
    package = next(p for p in (tmp_path / "client").iterdir() if p.is_dir() and (p / "client.py").is_file())
    probe = (
        f"import {package.name} as c\n"
        f"from {package.name}.api.storefront import shopper_recommendations\n"
        f"from {package.name}.api.orders import checkout\n"
        "assert callable(shopper_recommendations.sync) and callable(checkout.sync_detailed)\n"
        "c.AuthenticatedClient(base_url='http://127.0.0.1:1', token='cc_x')\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path / "client", capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr
