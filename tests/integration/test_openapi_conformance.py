"""The API answers what its OpenAPI document says, on every operation, to any input.

The hub runs as ``switchboard`` runs it (``services.bootstrap.hub.run_hub``: the API with every
channel's webhooks, the recorder and the timeline projection) on a real Kafka broker and a
SQLite store, in a thread, on a real port. Schemathesis generates requests from the hub's
document, valid and invalid; a signing session authenticates each one as its provider would
(Twilio's signature over URL and form, Meta's HMAC over the raw body, Telegram's secret token,
the CTI bearer token) and each ``/v1`` request with an admin's API token, so the fuzzer reaches
the handlers instead of stopping at the 401/403.

The document is built at import, from the same settings, because schemathesis needs it to
collect the tests (its ``from_fixture`` fails on pytest 9: it sets ``Node._nodeid``);
``test_the_hub_serves_the_document_that_is_fuzzed`` keeps the two the same.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Literal, cast
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from schemathesis.checks import CheckFunction
from schemathesis.specs.openapi import checks as openapi_checks
from starlette.datastructures import FormData
from twilio.request_validator import RequestValidator

from channels.publishing import InteractionPublisher
from channels.social.meta import SIGNATURE_HEADER as META_SIGNATURE_HEADER
from channels.social.meta import meta_signature
from channels.social.telegram import SECRET_HEADER as TELEGRAM_SECRET_HEADER
from deploy.ports import free_port
from projections.timeline import TimelineView
from services.bootstrap.bootstrap import bootstrap
from services.bootstrap.hub import run_hub
from services.bootstrap.settings import Settings

PUBLIC_BASE_URL = "https://hooks.example.com/switchboard"
TWILIO_TOKEN = "twilio-auth-token-0123456789abcdef"
CTI_TOKEN = "cti-token-0123456789abcdef"
META_SECRET = "meta-app-secret"
TELEGRAM_SECRET = "telegram-secret-token"
CUSTOMER = "+4930123456789"
MESSAGE_SID = "SM0123456789abcdef0123456789abcdef"

# What "the document is true" means, response by response. Not positive_data_acceptance:
# JSON Schema cannot say which strings are phone numbers, so a valid-looking address may
# still be refused (422/400), as documented.
CHECKS: list[CheckFunction] = [
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.negative_data_rejection,
]
FUZZ = settings(
    max_examples=30,
    deadline=None,
    database=None,  # each run starts fresh: the hub's data differs per run anyway
    suppress_health_check=list(HealthCheck),
)


def _until(check: Callable[[], bool], *, what: str, timeout: float = 30.0) -> None:
    # tests.helpers.eventually is async; the fuzz runs synchronously (requests), so poll here.
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        pause.wait(0.05)


@dataclass
class RunningHub:
    """``run_hub`` in a thread with its own event loop, stopped through ``stop``."""

    settings: Settings
    url: str
    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Event | None = None
    _error: BaseException | None = None
    _thread: threading.Thread | None = None

    def start(self) -> None:
        ready = threading.Event()

        async def main() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            ready.set()
            await run_hub(
                bootstrap(self.settings),
                self._stop,
                services=("api", "recorder", "timeline"),
            )

        def run() -> None:
            try:
                asyncio.run(main())
            except BaseException as exc:  # reported by the fixture, not lost in the thread
                self._error = exc
                ready.set()

        self._thread = threading.Thread(target=run, name="hub", daemon=True)
        self._thread.start()
        ready.wait(30)
        _until(self._answers, what="the hub's API to answer")

    def _answers(self) -> bool:
        if self._error is not None:
            raise self._error
        try:
            return requests.get(f"{self.url}/healthz", timeout=1).ok
        except requests.ConnectionError:
            return False

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(60)
        if self._error is not None:
            raise self._error


_CREDENTIAL_HEADERS = (
    "Authorization",
    "X-Twilio-Signature",
    META_SIGNATURE_HEADER,
    TELEGRAM_SECRET_HEADER,
)


class SigningSession(requests.Session):
    """Authenticates every request as its provider would, over the bytes actually sent."""

    def __init__(
        self, sign: Literal["always", "when drawn", "never"], *, api_token: str | None = None
    ) -> None:
        super().__init__()
        self.sign = sign
        self.api_token = api_token
        self._twilio = RequestValidator(TWILIO_TOKEN)

    def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:  # type: ignore[override]
        # A case that leaves its credential out (schemathesis draws such negative cases) is
        # sent without one, to be refused; one that has any gets the genuine value instead.
        drawn = [h for h in _CREDENTIAL_HEADERS if request.headers.pop(h, None) is not None]
        # Negative cases for the bearer scheme's header object may add arbitrary headers,
        # framing ones among them; a bad Content-Length is refused by uvicorn before the hub
        # sees the request, so the framing stays the client library's.
        for framing in ("Content-Length", "Transfer-Encoding", "Host", "Connection"):
            request.headers.pop(framing, None)
        request.prepare_content_length(request.body)
        if self.sign == "always" or (self.sign == "when drawn" and drawn):
            self._sign(request)
        return super().send(request, **kwargs)

    def _sign(self, request: requests.PreparedRequest) -> None:
        parts = urlsplit(request.url or "")
        body = request.body or b""
        raw = body.encode() if isinstance(body, str) else body
        if parts.path.startswith("/webhooks/twilio/"):
            public_url = PUBLIC_BASE_URL + parts.path + (f"?{parts.query}" if parts.query else "")
            try:
                pairs = parse_qsl(raw.decode(), keep_blank_values=True, errors="strict")
            except (UnicodeDecodeError, ValueError):
                pairs = []  # not a form Twilio could have signed; the hub answers 400 first
            signature = self._twilio.compute_signature(public_url, FormData(pairs))
            request.headers["X-Twilio-Signature"] = signature
        elif parts.path == "/webhooks/cti/events":
            request.headers["Authorization"] = f"Bearer {CTI_TOKEN}"
        elif parts.path in ("/webhooks/whatsapp", "/webhooks/messenger"):
            request.headers[META_SIGNATURE_HEADER] = meta_signature(raw, META_SECRET)
        elif parts.path == "/webhooks/telegram":
            request.headers[TELEGRAM_SECRET_HEADER] = TELEGRAM_SECRET
        elif parts.path.startswith("/v1/") and self.api_token is not None:
            request.headers["Authorization"] = f"Bearer {self.api_token}"


def every_channel(**settings: object) -> Settings:
    """Settings with every channel's webhooks on, as an installation configures them."""
    return Settings(
        default_region="DE",
        public_base_url=PUBLIC_BASE_URL,
        twilio_auth_token=SecretStr(TWILIO_TOKEN),
        twilio_account_sid="AC" + "0" * 32,
        twilio_from_number="+493050000000",
        cti_token=SecretStr(CTI_TOKEN),
        whatsapp_app_secret=SecretStr(META_SECRET),
        whatsapp_verify_token=SecretStr("whatsapp-verify"),
        whatsapp_access_token=SecretStr("whatsapp-access"),
        whatsapp_phone_number_id="106540352242922",
        messenger_app_secret=SecretStr(META_SECRET),
        messenger_verify_token=SecretStr("messenger-verify"),
        messenger_page_access_token=SecretStr("messenger-page"),
        telegram_bot_token=SecretStr("123456:telegram-bot-token"),
        telegram_secret_token=SecretStr(TELEGRAM_SECRET),
        **settings,  # type: ignore[arg-type]
    )


def hub_document() -> dict:
    """The OpenAPI document of the hub with every channel on.

    Building it calls nothing on the publisher or the view (the routes only close over them),
    so an unstarted publisher and no view do.
    """
    publisher = InteractionPublisher("127.0.0.1:1")
    no_view = cast(TimelineView, None)
    return bootstrap(every_channel()).api(view=no_view, publisher=publisher).openapi()


DOCUMENT = hub_document()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, kafka_broker) -> Iterator[RunningHub]:
    work, suffix = tmp_path_factory.mktemp("conformance"), uuid.uuid4().hex[:8]
    settings = every_channel(
        data_dir=work / "var",
        store=f"sqlite:///{work / 'history.db'}",
        kafka_bootstrap=kafka_broker.bootstrap,
        interactions_topic=f"sb.interactions.{suffix}",
        deadletter_topic=f"sb.deadletter.{suffix}",
        outbound_topic=f"sb.outbound.{suffix}",
        outbound_group=f"sb-outbound-{suffix}",
        recorder_group=f"sb-recorder-{suffix}",
        topic_partitions=1,
        session_timeout_ms=3000,
        http_port=free_port(),
    )
    running = RunningHub(settings, f"http://127.0.0.1:{settings.http_port}")
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def admin_token(hub: RunningHub) -> str:
    """An admin's API token, issued in the hub's store as `switchboard users` would."""
    users = bootstrap(hub.settings).user_directory()
    users.register("fuzz-admin", roles=["admin"])
    return users.issue_token("fuzz-admin").token


@pytest.fixture(scope="module")
def admin(admin_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {admin_token}"}


@pytest.fixture(scope="module")
def recorded_customer(hub: RunningHub, admin: dict[str, str]) -> uuid.UUID:
    """A customer with a call and a delivered SMS, as the webhooks record them."""
    signing = SigningSession("always")
    call = {"event": "newCall", "call_id": "seed-1", "direction": "inbound"}
    call |= {"from": CUSTOMER, "to": "+493050000000"}
    # The hub's webhooks answer 503 until its publisher has connected to Kafka.
    _until(
        lambda: signing.post(f"{hub.url}/webhooks/cti/events", json=call).status_code != 503,
        what="the webhooks to publish to Kafka",
    )
    answer = signing.post(f"{hub.url}/webhooks/cti/events", json=call)
    assert answer.status_code == 200, answer.text
    status = {"MessageSid": MESSAGE_SID, "MessageStatus": "delivered", "To": CUSTOMER}
    answer = signing.post(f"{hub.url}/webhooks/twilio/sms/status", data=status)
    assert answer.status_code == 204, answer.text

    def lookup() -> requests.Response:
        return requests.get(
            f"{hub.url}/v1/lookup", params={"address": CUSTOMER}, headers=admin, timeout=5
        )

    def projected() -> bool:
        delivery = requests.get(f"{hub.url}/v1/deliveries/{MESSAGE_SID}", headers=admin, timeout=5)
        found = lookup()
        return found.status_code == 200 and found.json()["known"] and delivery.status_code == 200

    _until(projected, what="the seeded customer in the timeline view")
    return uuid.UUID(lookup().json()["customer"]["customer_id"])


schema = schemathesis.openapi.from_dict(DOCUMENT)


def test_the_hub_serves_the_document_that_is_fuzzed(hub: RunningHub) -> None:
    assert requests.get(f"{hub.url}/openapi.json", timeout=5).json() == DOCUMENT


# The agent's event stream never ends by design (Server-Sent Events): it cannot be fuzzed as
# a request with an answer; tests/integration/test_screen_pops.py reads it.
@schema.exclude(path="/v1/agents/me/events").parametrize()
@FUZZ
def test_every_operation_answers_any_authenticated_input_as_documented(
    case: schemathesis.Case, hub: RunningHub, recorded_customer: uuid.UUID, admin_token: str
) -> None:
    session = SigningSession("when drawn", api_token=admin_token)
    response = case.call(base_url=hub.url, session=session, timeout=30)
    assert response.status_code < 500, f"{response.status_code}: {response.text}"
    case.validate_response(response, checks=CHECKS)


@schema.include(method="POST", path_regex="^/webhooks/").parametrize()
@settings(FUZZ, max_examples=10)
def test_every_webhook_refuses_requests_without_credentials(
    case: schemathesis.Case, hub: RunningHub
) -> None:
    response = case.call(base_url=hub.url, session=SigningSession("never"), timeout=30)
    # The coverage phase also tries other methods on the path: those are 405 for anyone.
    if case.method.upper() == case.operation.method.upper():
        assert response.status_code in (401, 403), f"{response.status_code}: {response.text}"
    case.validate_response(response, checks=CHECKS)


@schema.include(path_regex="^/v1/").parametrize()
@settings(FUZZ, max_examples=10)
def test_every_v1_operation_refuses_requests_without_a_token(
    case: schemathesis.Case, hub: RunningHub
) -> None:
    response = case.call(base_url=hub.url, session=SigningSession("never"), timeout=30)
    # FastAPI parses the body before any dependency runs, so a body that cannot be parsed
    # at all is refused (400/422) before the token is looked at; that reveals nothing.
    unparsable = (response.status_code == 400 and "error parsing the body" in response.text) or (
        response.status_code == 422 and "JSON decode error" in response.text
    )
    if case.method.upper() == case.operation.method.upper() and not unparsable:
        assert response.status_code == 401, f"{response.status_code}: {response.text}"
        assert response.headers["www-authenticate"] == ["Bearer"]  # lower-cased, as a list
    case.validate_response(response, checks=CHECKS)


def test_a_recorded_customers_lookup_timeline_and_delivery_answer_as_documented(
    hub: RunningHub, recorded_customer: uuid.UUID, admin: dict[str, str]
) -> None:
    cases = [
        schema["/v1/lookup"]["GET"].Case(query={"address": CUSTOMER}),
        schema["/v1/customers/{customer_id}/timeline"]["GET"].Case(
            path_parameters={"customer_id": str(recorded_customer)}, query={"limit": 10}
        ),
        schema["/v1/deliveries/{message_ref}"]["GET"].Case(
            path_parameters={"message_ref": MESSAGE_SID}
        ),
    ]
    for case in cases:
        response = case.call(base_url=hub.url, headers=admin, timeout=30)
        assert response.status_code == 200, response.text
        case.validate_response(response, checks=CHECKS)


# -- the error body, as a client sees it ------------------------------------------------------


def test_a_missing_query_parameter_is_a_problem_naming_it(
    hub: RunningHub, admin: dict[str, str]
) -> None:
    answer = requests.get(f"{hub.url}/v1/lookup", headers=admin, timeout=5)
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["status"] == 422 and problem["title"] == HTTPStatus(422).phrase
    assert [e["field"] for e in problem["errors"]] == ["query.address"]
    assert isinstance(problem["detail"], str) and "query.address" in problem["detail"]


@pytest.mark.parametrize("address", ["", "not a phone"])
def test_an_address_that_is_none_is_a_problem_naming_it(
    hub: RunningHub, admin: dict[str, str], address: str
) -> None:
    answer = requests.get(
        f"{hub.url}/v1/lookup", params={"address": address}, headers=admin, timeout=5
    )
    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == ["query.address"]


def test_the_cti_webhook_without_a_token_is_a_bearer_challenge(hub: RunningHub) -> None:
    answer = requests.post(f"{hub.url}/webhooks/cti/events", json={"event": "newCall"}, timeout=5)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["detail"] == "missing or wrong bearer token"


def test_a_webhooks_refusal_is_the_same_problem_body(hub: RunningHub) -> None:
    signing = SigningSession("always")
    answer = signing.post(f"{hub.url}/webhooks/twilio/sms", data={"Body": "hi"}, timeout=5)
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json() == {
        "type": "about:blank",
        "title": "Bad Request",
        "status": 400,
        "detail": "MessageSid is missing: Twilio always sends it on this webhook",
    }
