"""Strings from runs and configs reach the report as text, never as markup: the helpers
one by one, then a whole report rendered from hostile runs and walked tag by tag."""

import html
import re
from html.parser import HTMLParser

import hostile
import nbformat
import pytest
from nbconvert.filters.markdown_mistune import markdown2html_mistune

from moe_core import escape as esc
from moe_core.report import sections
from moe_core.report.render import CONTENT_SECURITY_POLICY, tables_folder

SAFE_LINK = re.compile(r"^(#|data:text/csv;base64,)")


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text a reader sees."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._skip += tag in ("style", "title")

    def handle_endtag(self, tag):
        self._skip -= tag in ("style", "title") and self._skip > 0

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)


def parse(markup: str) -> Tags:
    tags = Tags()
    tags.feed(markup)
    return tags


def unsafe(tags: Tags) -> list:
    """Tags or attributes that a hostile string could have made: scripts, frames, event
    handlers, links anywhere but the page and its CSV files, images that are not embedded
    PNGs."""
    found = []
    for tag, attrs in tags.tags:
        if tag in ("script", "iframe", "object", "embed", "form", "base", "link", "svg"):
            found.append((tag, attrs))
        if any(name.startswith("on") for name in attrs):
            found.append((tag, attrs))
        if tag == "a" and "href" in attrs and not SAFE_LINK.match(attrs["href"] or ""):
            found.append((tag, attrs))
        if tag == "img" and not (attrs.get("src") or "").startswith("data:image/png;base64,"):
            found.append((tag, attrs))
    return found


HOSTILE = [hostile.SCRIPT, hostile.ONERROR, hostile.JS_LINK, hostile.MD_IMAGE,
           hostile.MARKUP, hostile.FORMULA]


@pytest.mark.parametrize("text", HOSTILE)
def test_markdown_escaping_shows_the_text_and_makes_no_markup(text):
    rendered = markdown2html_mistune(f"Run **{esc.md(text)}** | and a table cell")
    tags = parse(rendered)
    assert [t for t, _ in tags.tags] == ["p", "strong"]  # ours only
    assert text in "".join(tags.text)


def test_markdown_escaping_keeps_a_pipe_table_to_its_cells():
    rendered = markdown2html_mistune(f"| a | b |\n| --- | --- |\n| {esc.md('x | y')} | z |")
    assert rendered.count("<td") == 2 and "x | y" in html.unescape(rendered)


def test_invisible_characters_are_shown_by_their_code_point():
    assert html.unescape(esc.md(hostile.RTL)) == "abc<U+202E>dcba"
    assert esc.visible(hostile.ZERO_WIDTH) == "zero<U+200B>width"
    assert esc.visible("line\nbreak") == "line<U+000A>break"  # keeps a table row whole


def test_figure_labels_show_dollars_and_are_cut_to_a_legible_length():
    assert esc.label("$x^2$") == r"\$x^2\$"
    cut = esc.label(hostile.LONG)
    assert len(cut) == esc.LABEL_MAX_CHARS and cut.endswith("…")


def test_csv_cells_that_spreadsheets_would_evaluate_are_quoted_and_numbers_are_not():
    assert esc.csv_cell(hostile.FORMULA) == "'" + hostile.FORMULA
    assert esc.csv_cell("-0.064") == "-0.064" and esc.csv_cell(-0.064) == -0.064
    assert esc.csv_cell("@SUM(A1)") == "'@SUM(A1)"


def test_a_condition_name_from_a_run_is_never_read_as_a_path():
    assert sections.condition_label("../../../etc/passwd") == "../../../etc/passwd"


# ---------------------------------------------------------------- a whole report


@pytest.mark.slow
def test_the_hostile_report_has_no_tag_or_attribute_made_from_a_name(hostile_report):
    _, page = hostile_report
    tags = parse(page)
    assert unsafe(tags) == []
    assert [t for t, _ in tags.tags].count("img") >= 3  # the figures are still there


@pytest.mark.slow
def test_every_hostile_name_is_shown_literally(hostile_report):
    _, page = hostile_report
    text = "".join(parse(page).text)
    for name in [*hostile.FOLDER_NAMES, hostile.FIELDS["intervention"],
                 hostile.FIELDS["device"]]:
        assert esc.visible(name) in text, name[:40]
    assert esc.visible(hostile.FIELDS["condition"]) in text  # the RTL override made visible
    assert "\u202e" not in text and "\u200b" not in text


@pytest.mark.slow
def test_every_markdown_output_of_the_executed_report_is_escaped(hostile_report):
    # the notebook itself is shared too (papermill's output, JupyterLab): the same walk over
    # each Markdown output as a Markdown renderer turns it into HTML
    path, _ = hostile_report
    nb = nbformat.read(path.with_suffix(".ipynb"), as_version=4)
    outputs = [o["data"]["text/markdown"] for cell in nb.cells if cell.cell_type == "code"
               for o in cell.get("outputs", []) if "text/markdown" in o.get("data", {})]
    assert len(outputs) >= 5
    for markdown in outputs:
        assert unsafe(parse(markdown2html_mistune(markdown))) == []


@pytest.mark.slow
def test_the_page_declares_a_policy_that_runs_no_script_and_loads_nothing(hostile_report):
    _, page = hostile_report
    policies = [attrs.get("content") for tag, attrs in parse(page).tags
                if tag == "meta" and attrs.get("http-equiv") == "Content-Security-Policy"]
    assert policies == [CONTENT_SECURITY_POLICY]
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY
    assert "script-src" not in CONTENT_SECURITY_POLICY  # default-src 'none' covers scripts
    assert "<script" not in page.lower()


@pytest.mark.slow
def test_the_csv_tables_quote_formulas(hostile_report):
    path, _ = hostile_report
    runs_csv = (tables_folder(path) / "runs.csv").read_text()
    assert hostile.FORMULA not in runs_csv.replace("'" + hostile.FORMULA, "")
