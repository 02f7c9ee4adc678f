"""Telephony: Twilio Voice webhooks and a generic CTI webhook for any phone system."""

from channels.voice.config import CtiConfig, TwilioVoiceConfig
from channels.voice.cti import cti_router
from channels.voice.directory import CallerDirectory
from channels.voice.inbound import twilio_voice_router

__all__ = ["CallerDirectory", "CtiConfig", "TwilioVoiceConfig", "cti_router", "twilio_voice_router"]
