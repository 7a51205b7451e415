"""Components of the reference code location, one folder each (defs.yaml)."""
