"""The monitor service: posts come in from the source channels by themselves (see service.py)."""
