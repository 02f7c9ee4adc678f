"""Is this request from Twilio? ``X-Twilio-Signature`` checked against the public URL.

Twilio signs the URL it requested plus the form parameters. Behind a reverse proxy the Host
header and the scheme are the proxy's, not what Twilio signed, so the URL is rebuilt from the
configured public base URL. Every failure is a 403 before anything is parsed or published.
"""

from __future__ import annotations

import hmac
from urllib.parse import parse_qsl

from fastapi import HTTPException, Request
from starlette.datastructures import FormData
from twilio.request_validator import (
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)

from channels.webhooks import bad_request

__all__ = ["MAX_BODY_BYTES", "SIGNATURE_HEADER", "TwilioSignature"]

# Twilio's bodies are a few hundred bytes (an SMS body is at most 1600 characters); anything
# far bigger is not Twilio and is refused before it is parsed.
MAX_BODY_BYTES = 64 * 1024


class TwilioSignature:
    """Signature checks for the webhooks of one Twilio account, behind one public URL.

    ``public_base_url`` is the URL at which Twilio reaches this application's root, e.g.
    ``https://hooks.example.com/switchboard``: a route's public URL is that plus the route's
    path and query string. ``shared_key_secret`` is the secret of a Twilio SharedKey, used
    when a request says it was signed with one (``X-Twilio-Webhooks-Signature-Settings``).
    """

    def __init__(
        self,
        *,
        auth_token: str,
        public_base_url: str,
        shared_key_secret: str | None = None,
    ) -> None:
        if not auth_token:
            raise ValueError("auth_token is empty: Twilio webhooks cannot be verified without it")
        if not public_base_url.startswith(("https://", "http://")):
            raise ValueError(
                f"public_base_url must be the absolute URL Twilio calls, not {public_base_url!r}"
            )
        self.public_base_url = public_base_url.rstrip("/")
        self._by_token = RequestValidator(auth_token)
        self._by_shared_key = RequestValidator(shared_key_secret) if shared_key_secret else None

    def public_url(self, request: Request) -> str:
        path = request.scope["path"]
        root = request.scope.get("root_path", "")
        # ASGI servers put the mount prefix in root_path; newer Starlette also keeps it in
        # path. Either way the public base URL already stands for the application's root.
        if root and path.startswith(root):
            path = path[len(root) :]
        query = request.scope.get("query_string", b"")
        return self.public_base_url + path + (f"?{query.decode('latin-1')}" if query else "")

    async def verified_params(self, request: Request) -> FormData:
        """The form parameters of a request Twilio signed; 403 if it did not, 400 or 413 for
        a body that is not a Twilio form."""
        signature = request.headers.get(SIGNATURE_HEADER)
        if not signature:
            raise HTTPException(403, f"{SIGNATURE_HEADER} is missing: not signed by Twilio")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            raise bad_request(
                "expected an application/x-www-form-urlencoded body, "
                f"not {content_type or 'no content type'!r}"
            )
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            raise HTTPException(413, f"body is {len(body)} bytes, over {MAX_BODY_BYTES}")
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
        except (UnicodeDecodeError, ValueError) as exc:
            raise bad_request(f"the form body is not valid UTF-8 form encoding: {exc}") from None
        params = FormData(pairs)
        settings = request.headers.get(SIGNATURE_SETTINGS_HEADER)
        validator = self._by_token
        if settings and "key=" in settings:
            if self._by_shared_key is None:
                raise HTTPException(
                    403, "signed with a Twilio SharedKey, but no shared_key_secret is configured"
                )
            validator = self._by_shared_key
        url = self.public_url(request)
        if not _signature_matches(validator, url, params, signature, settings):
            raise HTTPException(403, f"{SIGNATURE_HEADER} does not match this request at {url}")
        return params


def _signature_matches(
    validator: RequestValidator,
    url: str,
    params: FormData,
    signature: str,
    settings: str | None,
) -> bool:
    algorithm = get_signature_algorithm(settings)
    # RequestValidator.validate computes two HMACs on every request (the URL with and
    # without an explicit port, since Twilio signs either). The URL as configured is the
    # usual one, so one HMAC settles a genuine request; anything else gets the full check.
    try:
        expected = validator.compute_signature(url, params, algorithm)
    except ValueError:  # an algorithm this twilio version does not know
        return False
    if hmac.compare_digest(expected.encode(), signature.encode()):
        return True
    return validator.validate(url, params, signature, algorithm=algorithm)
