"""The Dagster code location (a dg project) over this Meltano project."""
