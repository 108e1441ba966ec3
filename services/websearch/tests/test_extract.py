"""web_fetch's content: HTML main text as Markdown with an absolute-link list; text, Markdown, JSON, PDF."""

from __future__ import annotations

import pytest

from corral_common.errors import UnsupportedMediaType
from corral_websearch.extract import TRUNCATED, extract
from corral_websearch.net.fetcher import Fetched

ARTICLE = """<!doctype html><html><head><title>Sourdough basics</title><script>alert('x')</script></head>
<body><nav><a href="/">Home</a> <a href="other.html#top">Other</a> <a href="mailto:a@b.c">Mail</a></nav>
<article><h1>Baking sourdough bread</h1>
<p>A sourdough starter is a culture of wild yeast and lactobacilli. Feed it flour and water every day and
it will leaven your <a href="/bread">bread</a> with a tangy flavour.</p>
<h2>Steps</h2><ul><li>Mix the dough</li><li>Fold it</li></ul>
<p>Bake at <b>250 C</b> for forty minutes, then let the loaf cool before slicing it.</p></article>
<footer><a href="https://elsewhere.example/x">elsewhere</a></footer></body></html>"""


def _page(body: str | bytes, content_type: str = "text/html", url: str = "http://site.test/a/b.html",
          charset: str | None = "utf-8"):  # type: ignore[no-untyped-def]
    data = body.encode() if isinstance(body, str) else body
    return extract(Fetched(url, 200, content_type, charset, data))


def test_html_gives_title_markdown_and_absolute_links() -> None:
    page = _page(ARTICLE)
    assert page.title == "Sourdough basics"
    assert page.content.startswith("# Baking sourdough bread")
    assert "## Steps" in page.content and "- Mix the dough" in page.content and "**250 C**" in page.content
    assert "[bread](http://site.test/bread)" in page.content
    assert "alert" not in page.content and "Home" not in page.content.split("\n")[0]
    assert page.links == ["http://site.test/", "http://site.test/a/other.html", "http://site.test/bread",
                          "https://elsewhere.example/x"]


def test_base_href_and_charset_sniffing() -> None:
    html = ('<html><head><meta charset="iso-8859-1"><base href="https://cdn.test/docs/"><title>Caf\xe9</title>'
            '</head><body><p>Un caf\xe9 cr\xe8me, s\'il vous pla\xeet.</p><a href="guide">g</a></body></html>')
    page = _page(html.encode("latin-1"), charset=None)
    assert page.title == "Café" and "crème" in page.content
    assert page.links == ["https://cdn.test/docs/guide"]


def test_plain_text_and_markdown_pass_through() -> None:
    text = _page("just some words\nsee https://example.org/a.", "text/plain")
    assert text.content == "just some words\nsee https://example.org/a." and text.title == ""
    assert text.links == ["https://example.org/a."]
    md = _page("# Release notes\n\nRead [the guide](../guide.md) first.", "text/markdown")
    assert md.title == "Release notes" and md.links == ["http://site.test/guide.md"]


def test_json_is_shown_as_code_and_undeclared_html_is_sniffed() -> None:
    assert _page('{"a": [1, 2]}', "application/json").content == '```json\n{\n  "a": [\n    1,\n    2\n  ]\n}\n```'
    assert _page(ARTICLE, "").title == "Sourdough basics"


def test_pdf_text_is_extracted() -> None:
    pdf = _minimal_pdf("Alpacas hum softly")
    page = _page(pdf, "application/pdf", charset=None)
    assert "Alpacas hum softly" in page.content


def test_long_content_is_truncated_with_a_marker() -> None:
    page = extract(Fetched("http://t/", 200, "text/plain", None, b"word " * 50_000), max_chars=1000)
    assert page.content.endswith(TRUNCATED) and len(page.content) < 1100


def test_other_types_are_refused() -> None:
    with pytest.raises(UnsupportedMediaType):
        _page(b"\x00\x01", "application/octet-stream")


def _minimal_pdf(text: str) -> bytes:
    """A one-page PDF with a line of text (written by hand: no PDF writer needed)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return out
