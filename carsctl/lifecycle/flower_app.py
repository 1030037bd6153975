"""The Celery app Flower runs with (`celery -A carsctl.lifecycle.flower_app flower`, started by
`carsctl flower`): the project's app, whose connections name the Redis URL Flower's Broker tab knows.

Flower builds its broker client from `Connection.as_uri()`, whose scheme is the transport: with this
project's transport class (`cars_bot.broker:PriorityRedisTransport`) Flower finds no broker class for
it and its Broker tab and `/api/queues/length` answer 404 ("'redis' broker is not supported"). The
connections of this app report `redis://...` (TCP) or `redis+socket:///path` (the embedded broker)
instead; what they connect with, the transport class included, is unchanged.

Flower counts a queue's messages over `broker_transport_options["priority_steps"]` joined with its
`sep`, both of which the app configures (0..9 and ":"), so it counts the ten priority sub-lists of each
queue, as `carsctl queues` does (ready messages only: Flower does not count unacked ones).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

    from cars_bot.config import Settings


def flower_uri(uri: str, *, hostname: str | None, virtual_host: str | None, ssl: bool = False) -> str:
    """`cars_bot.broker:PriorityRedisTransport://host:port/db` as Flower's URL: `redis://host:port/db`
    (`rediss://` with TLS), or `redis+socket:///path/redis.sock` when the connection is a unix socket
    (no host; the socket path is the virtual host). Any other URL is returned as it is."""
    from cars_bot.broker import TRANSPORT_PATH

    scheme, separator, rest = uri.partition("://")
    if scheme != TRANSPORT_PATH or not separator:
        return uri
    if not hostname and virtual_host and "/" in virtual_host.strip("/"):
        return "redis+socket:///" + virtual_host.lstrip("/")
    return f"{'rediss' if ssl else 'redis'}://{rest}"


def flower_app(settings: Settings | None = None) -> Celery:
    """The project's Celery app (a new instance) whose connections report a Redis URL in `as_uri`."""
    from kombu import Connection

    from cars_bot.celery_app import create_app

    class FlowerConnection(Connection):
        def as_uri(self, include_password: bool = False, mask: str = "**", *args: Any, **kwargs: Any) -> str:
            uri = super().as_uri(include_password, mask, *args, **kwargs)
            return flower_uri(uri, hostname=self.hostname, virtual_host=self.virtual_host, ssl=bool(self.ssl))

    application = create_app(settings)
    application.amqp.Connection = FlowerConnection
    return application


def __getattr__(name: str) -> Any:
    # `celery -A carsctl.lifecycle.flower_app` looks up `app`: built on first use, so importing this
    # module (a test, completion) builds nothing.
    if name == "app":
        application = flower_app()
        application.set_current()
        globals()["app"] = application
        return application
    raise AttributeError(name)
