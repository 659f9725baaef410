"""Optimisers from the ``optim`` config group (a ``_partial_`` torch optimiser) and the learning-rate schedule."""
