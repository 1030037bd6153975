"""Talking to the running workers and the broker's queues: early-returning remote control
(remote_control) and queue depth and purge (queue_ops)."""
