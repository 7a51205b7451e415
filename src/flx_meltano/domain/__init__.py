"""Domain: entities, value objects, domain events, specifications and errors, in plain Python."""
