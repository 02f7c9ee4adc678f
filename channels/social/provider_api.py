"""Calling a provider's HTTP API and turning its failures into the outbound errors.

- no answer (timeout, refused connection, broken transport), HTTP 429 and 5xx, and 4xx that the
  provider marks as throttling or temporary -> TransientSendError: the dispatcher retries;
- any other 4xx -> PermanentSendError with the provider's code and message: never retried.

A timeout after the request went out is ambiguous (the provider may have sent the message);
it is still transient, as the outbound contract asks, so a retry may rarely send twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from channels.outbound import PermanentSendError, TransientSendError

__all__ = ["DEFAULT_TIMEOUT", "ProviderError", "new_client", "post_json"]

# Connect fast or give up; a send itself may take a few seconds at busy times.
DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=5.0)


@dataclass(frozen=True)
class ProviderError:
    """What a provider said about a failed request."""

    code: str | None
    message: str
    transient: bool = False  # the provider says: try again later, whatever the HTTP status


ReadError = Callable[[int, Any], ProviderError]  # (HTTP status, decoded JSON body or None)


def new_client(
    base_url: str, timeout: httpx.Timeout | float = DEFAULT_TIMEOUT
) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout)


async def post_json(
    client: httpx.AsyncClient,
    url: str,
    body: Mapping[str, Any],
    *,
    provider: str,
    read_error: ReadError,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """POST ``body`` as JSON and return the decoded JSON answer of a 2xx response."""
    try:
        response = await client.post(url, json=body, headers=headers)
    except httpx.TimeoutException as exc:
        raise TransientSendError(
            f"{provider} did not answer in time ({type(exc).__name__})"
        ) from None
    except httpx.TransportError as exc:
        # The message says what failed (e.g. "connection refused"); URLs may hold tokens, so
        # only the exception's text, never the request, goes into the error.
        raise TransientSendError(
            f"{provider} could not be reached: {type(exc).__name__}: {exc}"
        ) from None
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if response.is_success:
        if not isinstance(answer, dict):
            # It may have been sent: retrying could send it twice, so this is not transient.
            raise PermanentSendError(
                f"{provider} accepted the request (HTTP {response.status_code}) but its answer "
                "is not a JSON object; the message may have been sent"
            )
        return answer
    error = read_error(response.status_code, answer)
    text = f"{provider} refused the message (HTTP {response.status_code}): {error.message}"
    if error.transient or response.status_code == 429 or response.status_code >= 500:
        raise TransientSendError(text, code=error.code)
    raise PermanentSendError(text, code=error.code)
