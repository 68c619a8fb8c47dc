"""Prometheus metrics of notifications, per channel and outcome."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES = Counter(
    "hub_notify_messages_total", "Platform requests by channel and outcome "
    "(sent, retry, config, failed)", ["channel", "outcome"])
NOTIFICATIONS = Counter(
    "hub_notify_notifications_total", "Outbox rows finished, by channel and status "
    "(sent, failed, suppressed)", ["channel", "status"])
RETRIES = Counter("hub_notify_retries_total", "Requests to be retried", ["channel"])
CONFIG_ERRORS = Counter(
    "hub_notify_config_errors_total",
    "Answers that mean the channel is misconfigured (signature, token, key)", ["channel"])
PENDING = Gauge("hub_notify_pending", "Due outbox rows not yet sent at the last poll")
SEND_SECONDS = Histogram("hub_notify_send_seconds", "Platform request time", ["channel"],
                         buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10))
RELOADS = Counter("hub_notify_reloads_total", "Notify file reloads", ["result"])
