"""The demo and the reproduction tables: the project's own commands run step by step, and their tables."""
