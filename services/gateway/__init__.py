"""The HTTP API (and later webhooks, the agent realtime stream and the console)."""
