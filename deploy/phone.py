"""A pretend phone network for the demo: rings the hub's voice webhook as Twilio would.

Every few seconds one of the simulator's customers calls the hotline: the hub gets Twilio's
signed ``POST /webhooks/twilio/voice`` and routes the call (an agent's client, a queue,
voicemail); it rings for a few seconds, then the agent it was offered to answers (the agent
leg's status callback, ``To=client:<agent>``) and the call ends a little later, or nobody
answers and it is missed.  So the demo's screen pops appear on the consoles of the agents the
calls are routed to, and update as the calls go on.

Not Twilio: a stand-in for the demo, speaking Twilio's documented webhook format and
signature (``twilio.request_validator``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import secrets

import aiohttp
from twilio.request_validator import RequestValidator

from deploy.simulator import make_customers

log = logging.getLogger(__name__)

HOTLINE = "+18005550100"
_CLIENT = re.compile(r"<Identity>([^<]+)</Identity>")


class DemoPhoneNetwork:
    def __init__(
        self,
        *,
        api_url: str,
        public_base_url: str,
        auth_token: str,
        every_s: float = 8.0,
        customers: int = 200,
        seed: int | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.public_base_url = public_base_url.rstrip("/")
        self.validator = RequestValidator(auth_token)
        self.every_s = every_s
        self.customers = make_customers(customers)
        self.rng = random.Random(seed)
        self.calls = 0

    async def run(self, stop: asyncio.Event) -> None:
        calls: set[asyncio.Task] = set()
        async with aiohttp.ClientSession() as http:
            await self._hub_answers(http, stop)
            while not stop.is_set():
                call = asyncio.create_task(self._one_call(http, stop))
                calls.add(call)
                call.add_done_callback(calls.discard)
                try:
                    await asyncio.wait_for(stop.wait(), self.rng.uniform(0.5, 1.5) * self.every_s)
                except TimeoutError:
                    pass
            # Each call in flight hangs up (its status callback), so none is left ringing.
            await asyncio.gather(*calls, return_exceptions=True)

    async def _hub_answers(self, http: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        """Wait (on the stop, not blindly) until the hub's API answers: the first call waits."""
        while not stop.is_set():
            try:
                async with http.get(f"{self.api_url}/healthz") as answer:
                    if answer.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if await _stopped(stop, 0.5):
                return

    async def _post(self, http: aiohttp.ClientSession, path: str, params: dict[str, str]) -> str:
        signature = self.validator.compute_signature(self.public_base_url + path, params)
        async with http.post(
            self.api_url + path, data=params, headers={"X-Twilio-Signature": signature}
        ) as answer:
            text = await answer.text()
            if answer.status >= 400:
                log.warning("demo phone: %s answered %s: %s", path, answer.status, text[:200])
            return text

    async def _one_call(self, http: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        caller = self.rng.choice(self.customers).phone
        sid = "CA" + secrets.token_hex(16)
        call = {"CallSid": sid, "From": caller, "To": HOTLINE, "Direction": "inbound"}
        try:
            twiml = await self._post(http, "/webhooks/twilio/voice", call)
            self.calls += 1
            agent = _CLIENT.search(twiml)
            stopped = await _stopped(stop, self.rng.uniform(4, 9))
            if stopped or agent is None or self.rng.random() < 0.2:  # nobody picks up
                missed = {**call, "CallStatus": "no-answer"}
                await self._post(http, "/webhooks/twilio/voice/status", missed)
                return
            leg = {
                "CallSid": "CA" + secrets.token_hex(16),
                "ParentCallSid": sid,
                "From": caller,
                "To": f"client:{agent.group(1)}",
                "Direction": "outbound-dial",
                "CallStatus": "in-progress",
            }
            await self._post(http, "/webhooks/twilio/voice/status", leg)
            talk = self.rng.uniform(10, 40)
            await _stopped(stop, talk)  # the demo ends: the call ends with it
            ended = {**call, "CallStatus": "completed", "CallDuration": str(round(talk))}
            await self._post(http, "/webhooks/twilio/voice/status", ended)
        except aiohttp.ClientError as e:
            if not stop.is_set():  # stopping, the hub may be gone first
                log.warning("demo phone: the hub did not answer: %s", e)


async def _stopped(stop: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True
