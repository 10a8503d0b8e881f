"""The HTML report as a reader sees it: a smoke suite's report opened in headless Chromium
(Debian's `chromium`, driven by Playwright; never a browser Playwright downloads).

Screenshots at a laptop and a phone width go to reports/screenshots/ (git-ignored) for a
person to look at. MOE_REPORT_HTML=reports/inflection_report.html checks that report
instead. Without a Chromium the tests are skipped, saying so (.ci/run installs it).
"""

import os
import shutil
from pathlib import Path

import hostile
import pytest
import torch

from moe_core import escape as esc
from moe_core import paths
from moe_core.config.run_config import build_config
from moe_core.report import render
from moe_core.training.trainer import train

REPO = paths.CHECKOUT
SCREENSHOTS = REPO / "reports" / "screenshots"
REFERENCE_DIR = REPO.parent / "shared" / "reference" / "exp8_original"
EXPERIMENTS = ("baseline", "no_lb", "constant_lr", "higher_dropout")
SEEDS = (0, 1)
WIDTHS = {"laptop": (1280, 800), "phone": (390, 844)}
# quiet in a closed network: no update checks, no QUIC probes, no first-run pages
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def chromium_path() -> str | None:
    """$MOE_CHROMIUM, else the system's chromium (Debian) or chromium-browser (Ubuntu)."""
    given = os.environ.get("MOE_CHROMIUM")
    if given:
        return given
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    if path is None or not Path(path).is_file():
        pytest.skip("no Chromium here (apt-get install chromium, or set MOE_CHROMIUM to a "
                    "Chromium binary); the report was not checked in a browser")
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def report_html(browser, tmp_path_factory) -> Path:
    """The report of a smoke suite: four experiments x two seeds (and the reference's recorded
    results where they are present); or the report $MOE_REPORT_HTML names (e.g. the demo's)."""
    if os.environ.get("MOE_REPORT_HTML"):
        return Path(os.environ["MOE_REPORT_HTML"]).resolve()
    runs = tmp_path_factory.mktemp("runs")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 25k-parameter model trains fastest on one thread
    for experiment in EXPERIMENTS:
        for seed in SEEDS:
            train(build_config(experiment, "smoke"), seed=seed,
                  out_dir=runs / experiment / f"seed{seed}", progress=False)
    torch.set_num_threads(threads)
    references = [REFERENCE_DIR] if REFERENCE_DIR.is_dir() else []
    return render.render_report([runs], references,
                                out_html=tmp_path_factory.mktemp("report") / "report.html")


@pytest.fixture(scope="module", params=list(WIDTHS))
def page(request, browser, report_html):
    """The report loaded at one width, with what it logged and what it tried to fetch."""
    width, height = WIDTHS[request.param]
    context = browser.new_context(viewport={"width": width, "height": height},
                                  is_mobile=request.param == "phone", offline=True)
    view = context.new_page()
    view.width_name = request.param
    view.console_errors, view.outside_requests = [], []
    view.on("console", lambda m: m.type == "error" and view.console_errors.append(m.text))
    view.on("pageerror", lambda e: view.console_errors.append(str(e)))
    view.on("request", lambda r: r.url.startswith(("file:", "data:"))
            or view.outside_requests.append(r.url))
    view.goto(report_html.as_uri(), wait_until="load")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for full_page in (False, True):
        shot = SCREENSHOTS / f"report_{width}px{'_full' if full_page else ''}.png"
        view.screenshot(path=str(shot), full_page=full_page)
        print(f"screenshot: {shot}")
    yield view
    context.close()


@pytest.mark.slow
def test_report_loads_without_console_errors(page):
    assert page.console_errors == []


@pytest.mark.slow
def test_report_fetches_nothing_outside_its_file(page):
    assert page.outside_requests == []


@pytest.mark.slow
def test_every_figure_decodes_and_is_visible(page):
    figures = page.eval_on_selector_all("img", """imgs => imgs.map(img => {
        const box = img.getBoundingClientRect(), style = getComputedStyle(img);
        return {src: img.src.slice(0, 40), decoded: img.complete && img.naturalWidth > 0,
                width: box.width, height: box.height,
                shown: style.display !== 'none' && style.visibility !== 'hidden'};
    })""")
    assert len(figures) >= 3
    for figure in figures:
        assert figure["src"].startswith("data:image/"), figure
        assert figure["decoded"] and figure["shown"], figure
        assert figure["width"] > 0 and figure["height"] > 0, figure


@pytest.mark.slow
def test_tables_fit_or_scroll_inside_the_page(page):
    # a table wider than the window scrolls in its own box; the page itself never scrolls
    # sideways (a phone reader would lose the text column)
    layout = page.evaluate("""() => {
        const scrolls = el => ['auto', 'scroll'].includes(getComputedStyle(el).overflowX);
        const tables = [...document.querySelectorAll('table')].map(table => {
            let box = table.parentElement;
            while (box && !scrolls(box)) box = box.parentElement;
            const right = (box || table).getBoundingClientRect().right;
            return {width: table.getBoundingClientRect().width, scrolls: box !== null, right};
        });
        return {page: document.documentElement.scrollWidth, window: innerWidth, tables};
    }""")
    assert layout["page"] <= layout["window"]
    assert layout["tables"]
    for table in layout["tables"]:
        if table["width"] > layout["window"]:
            assert table["scrolls"] and table["right"] <= layout["window"] + 1, table


@pytest.mark.slow
def test_report_has_its_title_and_a_conclusion(page):
    assert page.locator("h1").count() == 1 and page.locator("h1").inner_text().strip()
    headings = page.eval_on_selector_all("h2, h3", "hs => hs.map(h => h.innerText)")
    assert any(word in h.lower() for h in headings for word in ("conclusion", "answer")), \
        headings
    assert len(headings) >= 4


@pytest.mark.slow
def test_report_shows_no_code(page):
    code = page.locator(".jp-CodeCell .jp-InputArea, .jp-CodeMirrorEditor, .highlight, "
                        ".jp-InputPrompt, .jp-OutputPrompt")
    assert code.count() == 0
    text = page.inner_text("body")
    for fragment in ("import ", "load_runs(", "plots.", "report.markdown("):
        assert fragment not in text


# ---------------------------------------------------------------- a report of hostile runs


@pytest.fixture(scope="module")
def hostile_page(browser, hostile_report):
    """The report of runs whose folder names and metrics fields hold scripts, event handlers,
    javascript: and Markdown links, a 10,000-character name, RTL and zero-width characters
    (tests/conftest.py); loaded at the phone width, where a long name would most easily break
    the layout."""
    html, _ = hostile_report
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                  offline=True)
    view = context.new_page()
    view.dialogs, view.console_errors, view.requests = [], [], []
    view.on("dialog", lambda d: view.dialogs.append(d.message) or d.dismiss())
    view.on("console", lambda m: m.type == "error" and view.console_errors.append(m.text))
    view.on("pageerror", lambda e: view.console_errors.append(str(e)))
    view.on("request", lambda r: r.url.startswith("data:") or view.requests.append(r.url))
    view.goto(html.as_uri(), wait_until="load")
    view.wait_for_timeout(500)  # an injected handler (onerror, a timer) would have run by now
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    view.screenshot(path=str(SCREENSHOTS / "report_hostile_390px_full.png"), full_page=True)
    yield view
    context.close()


@pytest.mark.slow
def test_a_hostile_report_opens_no_dialog_and_logs_no_error(hostile_page):
    assert hostile_page.dialogs == []
    assert hostile_page.console_errors == []


@pytest.mark.slow
def test_a_hostile_report_requests_nothing_but_its_own_file(hostile_page):
    assert [url for url in hostile_page.requests if not url.startswith("file:")] == []
    assert len([url for url in hostile_page.requests if url.startswith("file:")]) == 1


@pytest.mark.slow
def test_a_hostile_report_shows_every_name_literally_with_invisible_characters_named(
        hostile_page):
    text = hostile_page.inner_text("body")
    for name in [*hostile.FOLDER_NAMES, hostile.FIELDS["intervention"], hostile.FIELDS["device"]]:
        assert esc.visible(name) in text, name[:40]
    assert "abc<U+202E>dcba" in text and "zero<U+200B>width" in text
    assert hostile_page.locator("a[href^='javascript:'], script, iframe").count() == 0


@pytest.mark.slow
def test_a_hostile_report_keeps_its_layout(hostile_page):
    layout = hostile_page.evaluate("""() => ({page: document.documentElement.scrollWidth,
        window: innerWidth, h1: document.querySelectorAll('h1').length,
        images: [...document.images].filter(i => i.complete && i.naturalWidth > 0).length})""")
    assert layout["page"] <= layout["window"], layout
    assert layout["h1"] == 1 and layout["images"] >= 3, layout
