"""The report notebook executed by papermill and exported as one self-contained HTML file
(no code, figures embedded, no script fetched from anywhere), with its tables as CSV files
beside it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from moe_core.errors import UserInputError
from moe_core.paths import REPORT_NOTEBOOK, project_root

DEFAULT_HTML = "reports/inflection_report.html"
DEFAULT_TITLE = "Why does the MoE validation loss turn up at the end of training?"
TABLES_ENV = "MOE_REPORT_TABLES"  # where the notebook writes its CSV tables
# The page may load nothing but what it carries (figures as data: URLs, inline styles) and
# run no script at all: a folder name that slipped through escaping still could not act.
CONTENT_SECURITY_POLICY = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
                           "font-src data:; base-uri 'none'; form-action 'none'")
# JupyterLab's HTML look without the scripts it fetches from CDNs (require.js, MathJax,
# Mermaid, widgets): the report has no math or widgets and must open offline
SELF_CONTAINED_TEMPLATE = ("""{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}
<meta http-equiv="Content-Security-Policy" content="@CSP@">
{%- endblock html_head_js -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block extra_css %}
<style>
  .jp-Notebook { max-width: 1100px; margin: 0 auto; }
  .jp-OutputArea-output { overflow-x: auto; }
  .jp-CodeCell.jp-mod-noOutputs { display: none; }  /* hidden code cells leave no gap */
  .jp-Notebook .jp-OutputArea-output img { max-width: 100%; height: auto; }
  .jp-RenderedHTMLCommon table { font-size: 13px; }
  .jp-RenderedHTMLCommon td, .jp-RenderedHTMLCommon th { white-space: normal;
    text-align: left; vertical-align: top; }
  /* a name without spaces (a 10,000-character folder name) wraps instead of widening the
     page; in a table only where it must (`anywhere` would also split short words when the
     columns are narrow) */
  .jp-RenderedHTMLCommon p, .jp-RenderedHTMLCommon li, summary { overflow-wrap: anywhere; }
  .jp-RenderedHTMLCommon td, .jp-RenderedHTMLCommon th { overflow-wrap: break-word; }
  /* on a phone a figure keeps its own size (its text legible) and a table its columns:
     each scrolls sideways in its own box */
  @media (max-width: 700px) {
    .jp-Notebook .jp-OutputArea-output img { max-width: none !important; width: auto; }
    .jp-Notebook .jp-RenderedHTMLCommon table { display: block; overflow-x: auto; }
    .jp-Cell { padding-left: 4px; padding-right: 4px; }
  }
  details > summary { cursor: pointer; font-weight: 600; margin: 0.6em 0; }
</style>
{% endblock extra_css %}
""").replace("@CSP@", CONTENT_SECURITY_POLICY)


class ReportError(UserInputError):
    """The report notebook failed; the message names the notebook, the cell and the error."""


def resolve_dirs(dirs: Sequence[str | Path] | str | Path) -> list[Path]:
    """Folders as absolute paths; relative ones are taken from the project root (the
    report notebook's parameters, which JupyterLab runs from notebooks/; see paths)."""
    if isinstance(dirs, (str, Path)):
        dirs = [dirs]
    return [Path(d) if Path(d).is_absolute() else project_root() / d for d in dirs]


def tables_folder(html: Path) -> Path:
    """Where the CSV tables of a report go: `<report>_tables/` beside its HTML."""
    return html.with_name(f"{html.stem}_tables")


def render_report(
    run_dirs: Sequence[str | Path],
    reference_dirs: Sequence[str | Path] = (),
    out_html: str | Path = DEFAULT_HTML,
    title: str = DEFAULT_TITLE,
    notebook: str | Path = REPORT_NOTEBOOK,
    keep_notebook: bool = False,
) -> Path:
    """Execute the report notebook on these runs and write one self-contained HTML file
    (no code, figures embedded) and its tables as CSV beside it; relative paths are taken
    from the current folder."""
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter
    from papermill.exceptions import PapermillExecutionError

    from moe_core.runs.jupyter_kernel import execute_notebook

    out_html = Path(out_html).absolute()
    out_html.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="moe_report_"))
    executed = (out_html.with_suffix(".ipynb") if keep_notebook
                else workdir / Path(notebook).name)
    parameters = {"run_dirs": [str(Path(d).absolute()) for d in run_dirs],
                  "reference_dirs": [str(Path(d).absolute()) for d in reference_dirs]}
    previous = os.environ.get(TABLES_ENV)
    os.environ[TABLES_ENV] = str(tables_folder(out_html))
    try:
        # the kernel's own warnings go to a kernel.log in the work folder, not the terminal
        execute_notebook(Path(notebook), executed, parameters, log_dir=workdir)
    except KeyboardInterrupt:
        shutil.rmtree(workdir, ignore_errors=True)
        raise  # the previous report, if any, is untouched: it is replaced only when complete
    except PapermillExecutionError as e:
        first_line = (e.source or "").strip().splitlines()[:1]
        raise ReportError(
            f"the report notebook {notebook} failed in cell {e.cell_index} "
            f"({first_line[0] if first_line else 'empty'!r}): {e.ename}: {e.evalue}; the "
            f"executed notebook is kept at {executed} to inspect"
        ) from None
    finally:
        if previous is None:
            os.environ.pop(TABLES_ENV, None)
        else:
            os.environ[TABLES_ENV] = previous
    nb = nbformat.read(executed, as_version=4)
    nb.metadata["title"] = title
    exporter = HTMLExporter(
        extra_loaders=[jinja2.DictLoader({"report.html.j2": SELF_CONTAINED_TEMPLATE})],
        template_file="report.html.j2", exclude_input=True, exclude_input_prompt=True,
        exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    tmp = out_html.with_name(f".{out_html.name}.{os.getpid()}.tmp")
    tmp.write_text(body, encoding="utf-8")
    os.replace(tmp, out_html)
    if not keep_notebook:
        shutil.rmtree(workdir, ignore_errors=True)
    return out_html
