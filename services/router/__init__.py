"""Inbound routing: who gets a contact.

``config`` reads the routing file people write (queues, hours, agents, rules) and reports every
mistake as ``file:line: field: what is wrong``; ``decide`` is the pure decision over that
configuration, the caller's card and the agents' presence, with a reason for people and auditors.
"""
