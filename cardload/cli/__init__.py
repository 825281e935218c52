"""The ``cardload`` console script."""
