"""Prometheus metrics: one registry per app (so tests can run several apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """Every series vidgate exports at /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "vidgate_http_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.submit_seconds = Histogram(
            "vidgate_submit_seconds",
            "Time of upstream submit calls by provider and outcome",
            ["provider", "outcome"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.polls = Counter(
            "vidgate_polls",
            "Upstream status reads by provider and outcome",
            ["provider", "outcome"],
            registry=self.registry,
        )
        self.tasks = Gauge("vidgate_tasks", "Tasks by state", ["state"], registry=self.registry)
        self.channel_up = Gauge(
            "vidgate_channel_up",
            "1 when the channel's breaker is closed",
            ["channel", "provider"],
            registry=self.registry,
        )
        self.channel_in_flight = Gauge(
            "vidgate_channel_in_flight", "Unfinished tasks per channel", ["channel"], registry=self.registry
        )
        self.spend = Gauge(
            "vidgate_spend_usd", "Money spent or held, by model (USD)", ["model"], registry=self.registry
        )
        self.webhooks = Counter(
            "vidgate_webhook_deliveries", "Webhook delivery attempts by outcome", ["outcome"], registry=self.registry
        )
