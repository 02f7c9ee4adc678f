"""How every Twilio webhook route opens and closes: verified form in, one answer per delivery.

``TwilioWebhook.answers_once`` turns ``form -> answer`` into the route: the signature is
checked first (``channels.twilio.signature``), a delivery Twilio repeats gets the answer it
already got, and the answer to a new one is kept for its repeats.

Replays: Twilio repeats a delivery with the same ``I-Twilio-Idempotency-Token``; an answered
token gets the same answer again without publishing twice. That cache is only a saving: the
guarantee is the recorder's dedupe on ``provider_ref``, which survives restarts and spans
processes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable

from fastapi import Request, Response

from channels.twilio.form import TwilioForm
from channels.twilio.signature import TwilioSignature

__all__ = ["IDEMPOTENCY_HEADER", "TwilioWebhook"]

IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
_REPLAY_CACHE_SIZE = 10_000

AnswerDelivery = Callable[[TwilioForm], Awaitable[Response]]


class TwilioWebhook:
    """The webhook routes of one Twilio account, behind one public URL; ``signature``
    checks that a request is from that account."""

    def __init__(self, signature: TwilioSignature) -> None:
        self.signature = signature
        self._answered: OrderedDict[str, Response] = OrderedDict()

    def url(self, path: str) -> str:
        """The public URL of one of our routes, for callbacks we hand to Twilio."""
        return self.signature.public_base_url + path

    async def verified_form(self, request: Request) -> TwilioForm:
        params = await self.signature.verified_params(request)
        return TwilioForm(
            params=params,
            idempotency_token=request.headers.get(IDEMPOTENCY_HEADER),
            query=request.query_params,
        )

    def answers_once(self, answer: AnswerDelivery) -> Callable[[Request], Awaitable[Response]]:
        """The route that answers each verified delivery with ``answer(form)``, once.

        ``answer`` raises HTTPException for a request it refuses (nothing is kept then, so
        Twilio's retry is answered afresh) and returns only after Kafka confirmed its events.
        """

        async def route(request: Request) -> Response:
            form = await self.verified_form(request)
            if (replayed := self._replayed(form)) is not None:
                return replayed
            return self._remember(form, await answer(form))

        # FastAPI names the route, and the OpenAPI operation, after the endpoint function.
        route.__name__ = answer.__name__
        route.__qualname__ = answer.__qualname__
        route.__doc__ = answer.__doc__
        return route

    def _replayed(self, form: TwilioForm) -> Response | None:
        """The answer already given to this delivery, if Twilio is repeating it."""
        if form.idempotency_token is None:
            return None
        answer = self._answered.get(form.idempotency_token)
        if answer is not None:
            self._answered.move_to_end(form.idempotency_token)
        return answer

    def _remember(self, form: TwilioForm, answer: Response) -> Response:
        if form.idempotency_token is not None:
            self._answered[form.idempotency_token] = answer
            if len(self._answered) > _REPLAY_CACHE_SIZE:
                self._answered.popitem(last=False)
        return answer
