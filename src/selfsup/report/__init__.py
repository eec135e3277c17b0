"""report: what a run did and what it learned, as one self-contained HTML page (WORKDIR/report.html).

`inputs` reads the artefacts the other stages left (each may be missing), `sections` decides what
each part of the page says, `plots` draws the training curves, `formatting` makes numbers readable,
and `page` renders `report.html.j2` and writes the file.
"""

from selfsup.report.page import build_report, render_report

__all__ = ["build_report", "render_report"]
