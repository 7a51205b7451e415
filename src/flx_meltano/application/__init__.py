"""Application: the use cases, as commands that change things and queries that read them."""
