"""GAEN export files: read, write, sign and verify."""
