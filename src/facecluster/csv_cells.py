"""CSV formula injection: the one rule for text cells that a spreadsheet would run as a formula.

File names are chosen by whoever made the images, and every CSV facecluster writes holds them: a
file called ``=HYPERLINK("http://x","click").jpg`` runs as a formula when an analyst opens
scores.csv in Excel or LibreOffice. As OWASP advises, a text cell that starts with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return is written with a leading ``'`` (only in CSV; Parquet and
JSON keep the exact value), and facecluster's CSV readers take that ``'`` off again, so a CSV
written by facecluster (or by its pages, whose JavaScript applies the same rule,
``report/templates/csv_cell.js``) reads back to the exact file names.

A name that itself starts with ``'`` and then one of those characters (``'=x.jpg``) gets one more
``'`` too, so that reading always undoes writing: the reader takes one ``'`` off a cell of one or
more ``'`` followed by a formula character, and leaves every other cell alone.
"""

from __future__ import annotations

import re

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_ESCAPE = re.compile(r"'*[=+\-@\t\r]")
_ESCAPED = re.compile(r"'+[=+\-@\t\r]")


def escape_formula(value):
    """``value`` as a CSV cell that no spreadsheet runs: a leading ``'`` when it would start a formula.

    Non-text values are returned unchanged (a negative number is a number, not a formula).
    """
    if isinstance(value, str) and _ESCAPE.match(value):
        return "'" + value
    return value


def unescape_formula(value):
    """The text that `escape_formula` made ``value`` from: one leading ``'`` off an escaped cell."""
    if isinstance(value, str) and _ESCAPED.match(value):
        return value[1:]
    return value
