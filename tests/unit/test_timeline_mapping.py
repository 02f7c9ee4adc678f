"""What the timeline shows for each kind of interaction (pure mapping)."""

from __future__ import annotations

from projections.timeline import summarize


def test_summaries_read_like_an_agent_would_say_them() -> None:
    assert summarize({"type": "call.ended.v1", "duration_s": 192.5}) == "Call ended after 3m12s"
    assert summarize({"type": "call.missed.v1", "reason": "busy"}) == "Missed call (busy)"
    assert (
        summarize({"type": "message.received.v1", "subject": "Invoice", "body": "Hello\n\n  there"})
        == "Invoice — Hello there"
    )
    assert summarize(
        {
            "type": "consent.changed.v1",
            "channel": "sms",
            "granted": False,
            "purpose": "marketing",
            "source": "sms-keyword",
        }
    ) == ("Opted out of marketing on sms via sms-keyword")
    assert len(summarize({"type": "message.received.v1", "body": "x" * 1000})) == 160
