"""Command-line interface: a thin front over the application layer."""
