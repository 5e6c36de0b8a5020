"""One module per fuzz target (see ``tests/fuzz/harness.py`` for what a module provides)."""
