"""Anti-corruption layer: reads meltano.yml, runs and parses meltano, reads and writes Singer state."""
