"""Text from runs and configs made safe for the report: every folder name, arm, condition,
description, error message or path reaches Markdown, HTML, a figure or a CSV as data,
never as markup, links, math or a formula.

One helper per medium; the report calls them wherever such a string enters:

- `md` for Markdown (the report's sentences and pipe tables, rendered by nbconvert and by
  JupyterLab): every ASCII punctuation character becomes a numeric character reference,
  which both renderers show as the character itself and neither reads as syntax, so no
  tag, link, image, emphasis, table cell or autolink can come out of a name;
- `html` for HTML written directly (tables, captions);
- `label` for matplotlib text (no mathtext, bounded length);
- `csv_cell` for spreadsheet cells (no formulas).

Control and format characters (right-to-left overrides, zero-width spaces) are shown as
`<U+202E>` so a name cannot reorder or hide the text around it.
"""

from __future__ import annotations

import html as _html
import string
import unicodedata

# Cc: control (newline, NUL, ESC), Cf: format (bidi overrides, zero-width), Zl/Zp: line and
# paragraph separators. Each would change what the reader sees around the name.
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
LABEL_MAX_CHARS = 60  # a figure label longer than this is cut (its full text is in the tables)
_MARKDOWN_ENTITIES = {ord(c): f"&#{ord(c)};" for c in string.punctuation}
CSV_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def visible(text: object) -> str:
    """The text with each control or format character written as `<U+XXXX>`."""
    return "".join(f"<U+{ord(ch):04X}>" if unicodedata.category(ch) in INVISIBLE_CATEGORIES
                   else ch for ch in str(text))


def md(text: object) -> str:
    """A string as literal text inside Markdown (a sentence or a pipe-table cell)."""
    return visible(text).translate(_MARKDOWN_ENTITIES)


def html(text: object) -> str:
    """A string as literal text inside HTML (element content or a quoted attribute)."""
    return _html.escape(visible(text), quote=True)


def label(text: object, max_chars: int = LABEL_MAX_CHARS) -> str:
    """A string as a matplotlib label: `$` does not start math, and a long name is cut to
    `max_chars` with an ellipsis (a 10,000-character legend would make a 10,000-pixel
    figure)."""
    shown = visible(text)
    if len(shown) > max_chars:
        shown = shown[: max_chars - 1] + "…"
    return shown.replace("$", r"\$")


def csv_cell(value: object) -> object:
    """A value as a spreadsheet cell: a string a spreadsheet would read as a formula gets a
    leading apostrophe; numbers, and strings that are numbers, are left as they are."""
    if not isinstance(value, str) or not value.startswith(CSV_FORMULA_STARTS):
        return value
    try:
        float(value)
    except ValueError:
        return "'" + value
    return value
