"""Outbound campaigns: audience, templates, planning and exactly-once dispatch (issue 15)."""
