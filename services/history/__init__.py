"""The event store adapter: the one place where the domain meets the eventsourcing library
(the customer history, the outbound ledger, and their SQL recorders)."""
