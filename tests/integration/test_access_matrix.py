"""Every operation of the served API, for every role and every kind of bad credential,
answers what the one role table (``services/gateway/roles.py``) says.

The operations come from the hub's own OpenAPI document (every channel on), so a new
endpoint under ``/v1`` without a row in the table fails here (and fails to build), and a new
endpoint outside ``/v1`` that is not a provider webhook fails too: it would be open.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from channels.publishing import InteractionPublisher
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.settings import Settings
from services.domain.users import Role
from services.gateway.access import REFRESH_INTERVAL
from services.gateway.roles import ROUTE_ROLES, roles_for, spelled
from tests.integration.test_openapi_conformance import every_channel

# Besides the provider webhooks, which check signatures.  The console's session is how one
# signs in (it checks the password or token itself, and holds no customer data); the probes
# say whether the process runs and is ready, nothing of any customer.
# Open on purpose: the probes, the console's sign-in, and the Prometheus scrape (no label holds
# personal data: tests/integration/test_metrics.py; the Ingress does not route it outside).
OPEN_PATHS = {"/healthz", "/readyz", "/metrics", "/console/session"}
UNKNOWN_TOKEN = "sbt_0123456789abcdef_" + "A" * 43


@pytest.fixture
def settings(store_url: str, tmp_path: Path) -> Settings:
    return every_channel(data_dir=tmp_path / "var", store=store_url)


@pytest.fixture
def tokens(settings: Settings) -> dict[str, str]:
    """A token per role (a user with only that role), a disabled user's and a revoked one."""
    users = bootstrap(settings).user_directory()
    tokens: dict[str, str] = {}
    for role in Role:
        users.register(f"only-{role}", roles=[role])
        tokens[role] = users.issue_token(f"only-{role}").token
    users.register("gone", roles=list(Role))
    tokens["disabled user"] = users.issue_token("gone").token
    users.disable("gone")
    users.register("kept", roles=list(Role))
    revoked = users.issue_token("kept")
    users.revoke_token(revoked.token_id)
    tokens["revoked"] = revoked.token
    return tokens


@pytest.fixture
def client(settings: Settings, tokens: dict[str, str]) -> Iterator[TestClient]:
    hub = bootstrap(settings)
    api = hub.api(view=hub.timeline_view(), publisher=InteractionPublisher("127.0.0.1:1"))
    with TestClient(api) as client:
        yield client


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _sample(document: dict[str, Any], schema: dict[str, Any]) -> Any:
    schema = _resolve(document, schema)
    if "examples" in schema:
        return schema["examples"][0]
    if schema.get("format") == "uuid":
        return str(uuid.uuid4())
    if schema.get("type") == "object":
        return {
            name: _sample(document, prop)
            for name, prop in schema.get("properties", {}).items()
            if name in schema.get("required", [])
        }
    return "x"


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def request_for(document: dict[str, Any], path: str, operation: dict[str, Any]) -> dict:
    """A request the operation could accept: its required parameters and body, sampled."""
    url, query = path, {}
    for parameter in operation.get("parameters", []):
        value = _sample(document, parameter.get("schema", {}))
        if parameter["in"] == "path":
            url = url.replace("{" + parameter["name"] + "}", str(value))
        elif parameter["in"] == "query" and parameter.get("required"):
            query[parameter["name"]] = value
    request: dict[str, Any] = {"url": url, "params": query}
    body = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if body is not None:
        request["json"] = _sample(document, body["schema"])
    return request


def call(client: TestClient, method: str, request: dict, token: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    if request["url"].endswith("/events"):  # a stream that does not end: its head, and a line
        with client.stream(method, **request, headers=headers) as answer:
            if answer.status_code == 200:
                next(answer.iter_lines())
            else:
                answer.read()
            return answer
    return client.request(method, **request, headers=headers)


def test_every_v1_operation_has_a_rule_and_nothing_else_is_open(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    unruled, open_ = [], []
    for method, path, operation in operations(document):
        if path.startswith("/v1/"):
            if (method, path) not in ROUTE_ROLES:
                unruled.append(f"{method} {path}")
            assert operation["security"] == [{"apiToken": []}], f"{method} {path}"
            assert {"401", "403"} <= set(operation["responses"]), f"{method} {path}"
        elif path not in OPEN_PATHS and not path.startswith("/webhooks/"):
            open_.append(f"{method} {path}")
    assert unruled == [], "add these to services/gateway/roles.py ROUTE_ROLES"
    assert open_ == [], "put these under /v1 (bearer and role) or justify them as open"
    served = {(m, p) for m, p, _ in operations(document) if p.startswith("/v1/")}
    http_rows = {row for row in ROUTE_ROLES if row[0] != "WEBSOCKET"}
    assert served == http_rows, "the role table names operations the API lacks"


@pytest.mark.parametrize(
    "path", sorted(path for method, path in ROUTE_ROLES if method == "WEBSOCKET")
)
def test_each_websocket_takes_its_roles_and_closes_on_everyone_else(
    client: TestClient, tokens: dict[str, str], path: str
) -> None:
    """WebSockets are in no OpenAPI document: each row is tried, role by role."""
    allowed = roles_for("WEBSOCKET", path)
    for who, token in tokens.items():
        headers = {"Authorization": f"Bearer {token}"}
        if who in allowed:
            with client.websocket_connect(path, headers=headers) as ws:
                assert ws.receive_json()["kind"] == "hello", who
        else:
            with pytest.raises(WebSocketDisconnect) as refused:
                with client.websocket_connect(path, headers=headers) as ws:
                    ws.receive_json()
            assert refused.value.code == 1008, who
    with pytest.raises(WebSocketDisconnect) as anonymous:
        with client.websocket_connect(path) as ws:
            ws.receive_json()
    assert anonymous.value.code == 1008


def test_every_operation_answers_every_role_as_the_table_says(
    client: TestClient, tokens: dict[str, str]
) -> None:
    document = client.get("/openapi.json").json()
    wrong = []
    for method, path, operation in operations(document):
        if not path.startswith("/v1/"):
            continue
        allowed = ROUTE_ROLES[(method, path)]
        request = request_for(document, path, operation)
        for role in Role:
            answer = call(client, method, request, tokens[role])
            if role in allowed and answer.status_code in (401, 403):
                wrong.append(f"{role} {method} {path}: {answer.status_code} {answer.text}")
            if role not in allowed:
                if answer.status_code != 403 or spelled(allowed) not in answer.json()["detail"]:
                    wrong.append(f"{role} {method} {path}: {answer.status_code}, expected 403")
    assert wrong == []


@pytest.mark.parametrize(
    "credential", [None, "not-a-token", UNKNOWN_TOKEN, "disabled user", "revoked"]
)
def test_every_operation_refuses_a_missing_or_invalid_token_with_a_bearer_challenge(
    client: TestClient, tokens: dict[str, str], credential: str | None
) -> None:
    document = client.get("/openapi.json").json()
    token = tokens.get(credential, credential) if credential else None
    for method, path, operation in operations(document):
        if not path.startswith("/v1/"):
            continue
        answer = call(client, method, request_for(document, path, operation), token)
        assert answer.status_code == 401, (method, path, answer.text)
        assert answer.headers["WWW-Authenticate"] == "Bearer"
        assert answer.headers["content-type"] == "application/problem+json"
        assert spelled(ROUTE_ROLES[(method, path)]) in answer.json()["detail"]


def test_head_is_guarded_like_the_get_it_answers_with(
    client: TestClient, tokens: dict[str, str]
) -> None:
    """Starlette answers HEAD on a GET route (no body, but headers such as the length): it
    needs the same token and role as the GET."""
    document = client.get("/openapi.json").json()
    gets = [(p, o) for (m, p, o) in operations(document) if m == "GET" and p.startswith("/v1/")]
    assert gets
    for path, operation in gets:
        request = request_for(document, path, operation)
        assert call(client, "HEAD", request, None).status_code == 401, path
        if Role.campaign_manager not in ROUTE_ROLES[("GET", path)]:
            refused = call(client, "HEAD", request, tokens[Role.campaign_manager])
            assert refused.status_code == 403, path


def test_the_health_check_and_docs_need_no_token(client: TestClient) -> None:
    for url in ("/healthz", "/readyz", "/docs", "/redoc", "/openapi.json"):
        assert client.get(url).status_code == 200, url


def test_an_admin_manages_users_and_tokens_through_the_api(
    client: TestClient, tokens: dict[str, str]
) -> None:
    admin = {"Authorization": f"Bearer {tokens[Role.admin]}"}
    made = client.post("/v1/users", json={"username": "Kim", "roles": ["agent"]}, headers=admin)
    assert made.status_code == 201, made.text
    assert made.json()["username"] == "kim" and made.json()["roles"] == ["agent"]
    again = client.post("/v1/users", json={"username": "kim", "roles": ["agent"]}, headers=admin)
    assert again.status_code == 409 and "exists already" in again.json()["detail"]
    bad_role = client.post(
        "/v1/users", json={"username": "lea", "roles": ["janitor"]}, headers=admin
    )
    assert bad_role.status_code == 422 and "body.roles.0" in bad_role.json()["detail"]

    issued = client.post("/v1/users/kim/tokens", headers=admin).json()
    kim = {"Authorization": f"Bearer {issued['token']}"}
    looked_up = client.get("/v1/lookup", params={"address": "+493012345"}, headers=kim)
    assert looked_up.status_code == 200 and looked_up.json()["known"] is False
    listed = {u["username"]: u for u in client.get("/v1/users", headers=admin).json()}
    assert [t["token_id"] for t in listed["kim"]["tokens"]] == [issued["token_id"]]
    assert issued["token"] not in client.get("/v1/users", headers=admin).text

    revoked = client.delete(f"/v1/users/kim/tokens/{issued['token_id']}", headers=admin)
    assert revoked.status_code == 204
    # Revoked through this API process: refused at once, not only after the refresh.
    assert client.get("/v1/lookup", params={"address": "x"}, headers=kim).status_code == 401
    assert (
        client.delete(f"/v1/users/kim/tokens/{issued['token_id']}", headers=admin).status_code
        == 404
    )

    second = client.post("/v1/users/kim/tokens", headers=admin).json()
    assert client.post("/v1/users/kim/disable", headers=admin).json()["disabled"] is True
    kim = {"Authorization": f"Bearer {second['token']}"}
    assert client.get("/v1/lookup", params={"address": "x"}, headers=kim).status_code == 401
    assert client.post("/v1/users/kim/tokens", headers=admin).status_code == 409
    assert client.post("/v1/users/ghost/disable", headers=admin).status_code == 404
    assert client.post("/v1/users/only-admin/disable", headers=admin).status_code == 409


def test_a_token_revoked_elsewhere_stops_working_within_the_refresh_interval(
    client: TestClient, settings: Settings, tokens: dict[str, str]
) -> None:
    users = bootstrap(settings).user_directory()  # another process: the CLI, another API
    issued = users.issue_token(f"only-{Role.agent}")
    agent = {"Authorization": f"Bearer {issued.token}"}
    lookup = {"url": "/v1/deliveries/SM1", "headers": agent}
    assert client.get(**lookup).status_code == 404  # authenticated; no such message

    users.revoke_token(issued.token_id)
    revoked_at = time.monotonic()
    pause = threading.Event()
    while client.get(**lookup).status_code != 401:
        assert time.monotonic() - revoked_at < REFRESH_INTERVAL + 1.0, "still accepted"
        pause.wait(0.02)
    assert time.monotonic() - revoked_at <= REFRESH_INTERVAL + 0.5
