"""The event store adapter: the one place where the domain meets the eventsourcing library."""
