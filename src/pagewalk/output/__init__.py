"""Output formats, kept apart from the computations they print."""
