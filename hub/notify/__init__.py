"""Alarms reach a person: channels, rosters, escalation policies, the outbox, silences."""
