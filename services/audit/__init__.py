"""The compliance auditor's tools over the customer history (replay, access log, export,
and tamper evidence: the hash chain's verifier and signed checkpoints of its head)."""
