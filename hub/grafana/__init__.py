"""Grafana as code: dashboards, datasource provisioning and a push client for the hub."""
