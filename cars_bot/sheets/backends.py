"""Which workbook backend the settings select: the Google spreadsheet or the local JSON file.

This lives apart from :mod:`cars_bot.sheets.workbook` (the interface both backends implement), so
the interface never imports its implementations and the dependencies run one way:
backends -> google / local -> workbook. Importing it does not import gspread: the Google backend
loads it on its first request.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from cars_bot.sheets.google import GoogleWorkbook
from cars_bot.sheets.local import LocalWorkbook
from cars_bot.sheets.workbook import Workbook

if TYPE_CHECKING:
    from cars_bot.config import Settings

logger = logging.getLogger("cars_bot.sheets")


def open_workbook(settings: Settings) -> Workbook:
    """The Google workbook when both Google settings are present, else the local JSON workbook."""
    credentials, spreadsheet = settings.google_credentials_file, settings.google_spreadsheet_id
    if credentials and spreadsheet:
        return GoogleWorkbook(credentials, spreadsheet)
    if credentials or spreadsheet:
        missing = "GOOGLE_SPREADSHEET_ID" if credentials else "GOOGLE_CREDENTIALS_FILE"
        logger.warning("Google Sheets half configured (%s is not set): using the local workbook %s",
                       missing, settings.sheets_workbook)
    return LocalWorkbook(settings.sheets_workbook)
