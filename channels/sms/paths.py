"""The SMS webhook routes; the status callback URL of each sent message is built from them."""

TWILIO_SMS_PATH = "/webhooks/twilio/sms"
TWILIO_SMS_STATUS_PATH = "/webhooks/twilio/sms/status"
