"""An MLflow address answered by something other than MLflow: a sign-in proxy's page (200, HTML), a
gateway's 404 for a path it does not route, a 401 from an authenticating proxy. The registry cannot be
read: the registry's routes answer 503, as for a registry that does not answer, not a 500."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import free_port
from tests.resilience.conftest import fault_settings, make_keys, seeded_factory
from tests.serving.conftest import auth

PORTS = range(18768, 18774)


def answering(status: int, body: bytes) -> ThreadingHTTPServer:
    """An HTTP server on 127.0.0.1 answering every request with `status` and the HTML `body`."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PATCH = do_DELETE = _answer

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port(PORTS)), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize(
    ("status", "body"),
    [(200, b"<html>Sign in</html>"), (404, b"<html>Not Found</html>"), (401, b"<html>Log in</html>")],
    ids=["sign-in-page", "gateway-404", "proxy-401"],
)
def test_registry_routes_answer_503_when_the_registry_address_is_not_mlflow(
    status, body, tmp_path, open_client, monkeypatch
):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    server = answering(status, body)
    try:
        factory = seeded_factory(f"sqlite:///{tmp_path / 'db.sqlite'}")
        keys = make_keys(factory)
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        settings = fault_settings(tmp_path, mlflow_uri=uri)
        client = open_client(settings, factory)
        admin = auth(keys["admin"])
        for r in (
            client.get("/v1/models", headers=admin),
            client.put(
                f"/v1/models/{settings.model_name}/aliases/champion", json={"version": "1"}, headers=admin
            ),
        ):
            assert r.status_code == 503, r.text
            assert r.json()["code"] == "unavailable" and int(r.headers["retry-after"]) > 0
            assert "html" not in r.text.lower() and uri not in r.text  # what answered stays in the log
    finally:
        server.shutdown()
        server.server_close()
