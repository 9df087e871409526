"""CSV files made for people to open: the evidence report and the suppression export.

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula, and a tab or
carriage return in front of one does not stop it. Cells here carry text that others wrote (a
recipient id from a manifest, a bounce's diagnostic, an admin's reason), so every writer follows
OWASP's rule for CSV injection: such a cell is written with a single quote in front, which
spreadsheets show as text. The csv module's quoting takes care of separators and quotes inside.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: object) -> str:
    """The cell as text, with a leading ``'`` when a spreadsheet would read it as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


class ExportWriter(csv.DictWriter[str]):
    """``csv.DictWriter`` whose every cell goes through :func:`neutralise`."""

    def writerow(self, rowdict: Mapping[str, Any]) -> Any:
        return super().writerow({name: neutralise(value) for name, value in rowdict.items()})

    def writerows(self, rowdicts: Iterable[Mapping[str, Any]]) -> None:
        # DictWriter.writerows bypasses writerow: route it through, so no row escapes the rule
        for row in rowdicts:
            self.writerow(row)
