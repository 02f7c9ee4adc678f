"""Outbound messages: the dispatcher that turns send commands into provider calls, once each."""
