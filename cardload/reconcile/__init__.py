"""Reconciliation: what the API holds, joined with what the job records say."""

from cardload.reconcile.audit import Finding, Reconciliation, reconcile

__all__ = ["Finding", "Reconciliation", "reconcile"]
