"""The reference Dagster code location (a dg project) over this repository's Meltano project."""
