//! Alert notifications: grouping, dedup, silences, escalation, digests (issue 4).
