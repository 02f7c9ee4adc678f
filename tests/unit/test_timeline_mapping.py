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
    assert summarize(
        {
            "type": "delivery.status.v1",
            "channel": "sms",
            "message_ref": "c1",
            "status": "failed",
            "error_message": "the customer opted out",
        }
    ) == ("sms message c1 failed: the customer opted out")


def test_a_late_sent_report_never_overwrites_delivered() -> None:
    from datetime import UTC, datetime
    from uuid import uuid4

    from contracts import DeliveryStatus
    from projections.timeline import DeliveryReport, fold_delivery_reports

    cid, at = uuid4(), datetime(2026, 1, 1, tzinfo=UTC)

    def report(ref: str, status: str) -> DeliveryReport:
        return DeliveryReport(ref, cid, "sms", DeliveryStatus(status), at)

    winners = fold_delivery_reports(
        {"SM2": DeliveryStatus.delivered},
        [
            report("SM1", "delivered"),
            report("SM1", "sent"),
            report("SM2", "sent"),
            report("SM3", "sent"),
            report("SM3", "failed"),
            report("SM3", "delivered"),
        ],
    )
    assert winners["SM1"].status is DeliveryStatus.delivered
    assert "SM2" not in winners  # already further along
    assert winners["SM3"].status is DeliveryStatus.failed
