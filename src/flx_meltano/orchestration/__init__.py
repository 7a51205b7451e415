"""Orchestration: the Dagster code location (translator, resource, assets, jobs, schedules, sensors)."""
