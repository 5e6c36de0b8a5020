"""The fuzz harness (``make fuzz``): in-process targets for every parser that reads bytes from a peer or a file.

``harness.py`` runs a target's inputs with a per-input time limit and sorts the outcomes; ``targets/`` holds
one module per input kind (seeds written here, a grammar mutator, the call into the engine and the
exceptions it declares for bad input); ``runner.py`` is the command line (coverage-guided with atheris, or
the grammar mutators alone) and prints the table.
"""
