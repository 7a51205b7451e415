"""Files flx-meltano ships for a project: Dagster instance and workspace settings, code location templates."""
