"""`python -m cars_bot.monitor [--pidfile PATH]`: run the monitor in the foreground until SIGTERM.

`carsctl monitor start` runs it detached (with a pidfile); under systemd it runs as is. It logs to
`$LOG_DIR/monitor.log`. Exit status: 0 stopped by a signal, 1 failed (see the log), 2 not configured.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from cars_bot.config import get_settings
from cars_bot.monitor.client import make_client, session_problem
from cars_bot.monitor.heartbeat import heartbeat_path, write_heartbeat
from cars_bot.monitor.service import Monitor, NotAuthorized
from cars_bot.secret_masking import mask_secrets_in


class _MaskingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_secrets_in(super().format(record), get_settings())


def _log_to(path: Path, level: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(_MaskingFormatter("[%(asctime)s: %(levelname)s/monitor] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    from cars_bot.sheets.log_handler import install

    install(root, "monitor")  # LOG_TO_SHEETS=on: warnings and errors to the sheet "Логи" as well
    logging.getLogger("cars_bot").setLevel(level.upper())


async def _serve() -> None:
    settings = get_settings()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    path = heartbeat_path(settings)
    monitor = Monitor(make_client(settings), interval=settings.monitor_update_interval,
                      heartbeat=lambda beat: write_heartbeat(path, beat))
    await monitor.run(stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cars_bot.monitor")
    parser.add_argument("--pidfile", type=Path)
    parser.add_argument("--loglevel", default="info")
    args = parser.parse_args(argv)
    settings = get_settings()
    problem = session_problem(settings)
    if problem is not None:
        print(problem, file=sys.stderr)
        return 2
    _log_to(settings.log_dir / "monitor.log", args.loglevel)
    if args.pidfile:
        args.pidfile.parent.mkdir(parents=True, exist_ok=True)
        args.pidfile.write_text(f"{os.getpid()}\n")
    logger = logging.getLogger("cars_bot.monitor")
    logger.info("monitor starting (pid %s)", os.getpid())
    try:
        asyncio.run(_serve())
    except NotAuthorized as error:
        logger.error("%s", error)
        return 1
    except Exception:
        logger.exception("the monitor failed")
        return 1
    finally:
        if args.pidfile:
            args.pidfile.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
