"""SMS through Twilio Messaging: incoming messages, keywords, delivery status, sending."""

from channels.sms.config import TwilioSmsConfig
from channels.sms.inbound import twilio_sms_router
from channels.sms.outbound import TwilioSmsSender
from channels.sms.segments import count_segments

__all__ = ["TwilioSmsConfig", "TwilioSmsSender", "count_segments", "twilio_sms_router"]
