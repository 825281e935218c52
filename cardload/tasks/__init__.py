"""Celery tasks: thin wrappers that run one pipeline step and act on its outcome."""
