"""carsctl: the operator's command line for the cars_bot Celery task system."""

__version__ = "0.1.0"
