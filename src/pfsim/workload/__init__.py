"""Workloads: access-pattern generators that produce page streams as numpy arrays."""
