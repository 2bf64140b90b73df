"""Registry of tokens and venue beacons (escrowed seeds encrypted at rest)."""
