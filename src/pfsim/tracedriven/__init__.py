"""Trace-driven simulation: replay traces through replacement policies, miss-ratio curves.

The backends of ``pfsim replay`` and ``pfsim mrc`` and of the Python functions
``pfsim.replay`` and ``pfsim.mrc``.
"""
