"""The admin spreadsheet: layout, the Google and local workbooks, and the sync with the database.

Modules, in the direction of their imports:

- :mod:`~cars_bot.sheets.workbook`: the layout (worksheet titles, headers) and the ``Workbook``
  interface; :mod:`~cars_bot.sheets.google` and :mod:`~cars_bot.sheets.local` implement it, and
  :mod:`~cars_bot.sheets.backends` picks one from the settings (``open_workbook``);
- :mod:`~cars_bot.sheets.cells`: cell text <-> typed values (channel links, flags, dates, counts);
- the syncs, one per worksheet: :mod:`~cars_bot.sheets.channel_sync`,
  :mod:`~cars_bot.sheets.subscriber_sync`, :mod:`~cars_bot.sheets.analytics`.

Every sync is a plain function over a SQLAlchemy session and a workbook that returns a frozen
dataclass; the Celery tasks in :mod:`cars_bot.tasks.sheets_tasks` only wrap them. Every time is
timezone-aware UTC, and dates in the sheet are UTC. Each sync reads its worksheet once, changes the
database, COMMITS the session, and only then writes the sheet (one batch of updates, then at most
one append): a failed sheet write is simply redone by the next run, and never loses a change
already applied to the database. No sync calls Telegram.

Importing this package loads only the layout and the interface (standard library): the backends and
the syncs are imported where they are used, and gspread and SQLAlchemy only with them.
"""

from cars_bot.sheets.workbook import LAYOUT, Row, Workbook

__all__ = ["LAYOUT", "Row", "Workbook"]
