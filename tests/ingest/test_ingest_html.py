"""HTML pages: the main text is kept, menus, headers, footers and scripts are not."""

from selfsup.ingest import html

PAGE = """<html><body><header>SiteHeader</header><nav><a href="/">NavHome</a><a href="/x">NavOther</a></nav>
<div><h1>Seal replacement</h1><p>Unscrew the four bolts.</p><ul><li>Remove the cover</li><li>Lift the seal</li></ul></div>
<aside>SidebarAd</aside><footer>FooterText</footer><script>ScriptCode()</script><style>.x{}</style></body></html>"""


def test_fallback_drops_boilerplate_and_keeps_block_breaks():
    """When trafilatura finds nothing, the lxml fallback keeps body text minus nav/header/footer/aside/script/style."""
    text = html._body_text(PAGE)
    for junk in ("SiteHeader", "NavHome", "NavOther", "SidebarAd", "FooterText", "ScriptCode", ".x{}"):
        assert junk not in text
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert lines == ["Seal replacement", "Unscrew the four bolts.", "Remove the cover", "Lift the seal"]


def test_fallback_is_used_when_trafilatura_returns_nothing(monkeypatch):
    """main_text falls back to the lxml text when trafilatura returns None (or raises)."""
    monkeypatch.setattr("trafilatura.extract", lambda *a, **k: None)
    assert "Unscrew the four bolts." in html.main_text(PAGE)

    def boom(*a, **k):
        raise ValueError("hostile page")

    monkeypatch.setattr("trafilatura.extract", boom)
    assert "Lift the seal" in html.main_text(PAGE)


def test_empty_and_declared_encoding_pages_do_not_raise():
    """An empty page gives empty text; a page with an XML encoding declaration still parses."""
    assert html._body_text("") == ""
    declared = '<?xml version="1.0" encoding="utf-8"?><html><body><p>Déclaré</p></body></html>'
    assert "Déclaré" in html._body_text(declared)
