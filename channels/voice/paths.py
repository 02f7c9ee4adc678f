"""The voice webhook routes; callback URLs handed to Twilio are built from them."""

TWILIO_VOICE_PATH = "/webhooks/twilio/voice"
TWILIO_VOICE_STATUS_PATH = "/webhooks/twilio/voice/status"
TWILIO_VOICE_QUEUE_PATH = "/webhooks/twilio/voice/queue"
TWILIO_VOICE_DIAL_PATH = "/webhooks/twilio/voice/dial"
TWILIO_VOICE_WAIT_PATH = "/webhooks/twilio/voice/wait"
TWILIO_VOICE_RECORDING_PATH = "/webhooks/twilio/voice/recording"
CTI_EVENTS_PATH = "/webhooks/cti/events"
