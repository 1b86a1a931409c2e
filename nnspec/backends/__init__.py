"""Backends: ``numpy`` (the reference interpreter) and ``torch`` (imported on demand)."""
