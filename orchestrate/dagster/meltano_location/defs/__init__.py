"""Components of the code location, one folder each (defs.yaml)."""
