"""Prometheus counters of the rules engine, the alarm service and the webhook sender."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

RULE_READINGS_IGNORED = Counter(
    "hub_rules_readings_ignored_total",
    "Readings the rules engine did not evaluate",
    ["reason"],
)
RULE_ERRORS = Counter("hub_rules_errors_total", "Rule evaluations that raised", ["rule"])
ALARM_TRANSITIONS = Counter(
    "hub_alarm_transitions_total", "Alarm lifecycle transitions", ["action", "severity"]
)
ALARM_OUTPUT_ERRORS = Counter(
    "hub_alarm_output_errors_total", "Alarm outputs (points, MQTT) that raised", ["output"]
)
ALARMS_OPEN = Gauge("hub_alarms_open", "Alarms not yet cleared and acknowledged")
WEBHOOK_SENT = Counter("hub_webhook_sent_total", "Webhook deliveries accepted by the receiver")
WEBHOOK_FAILED = Counter(
    "hub_webhook_failed_total", "Webhook deliveries given up after all retries or a 4xx"
)
WEBHOOK_DROPPED = Counter(
    "hub_webhook_dropped_total",
    "Webhook deliveries dropped (oldest first) because the queue was full",
)
