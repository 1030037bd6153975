"""The admin spreadsheet: layout, the Google and local workbooks, and the sync with the database.

Importing this package is cheap (standard library only): gspread and SQLAlchemy are imported by
:mod:`cars_bot.sheets.google` and :mod:`cars_bot.sheets.sync` when they are used.
"""

from cars_bot.sheets.workbook import LAYOUT, Row, Workbook, open_workbook

__all__ = ["LAYOUT", "Row", "Workbook", "open_workbook"]
