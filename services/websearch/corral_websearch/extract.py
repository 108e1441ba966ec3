"""Turn a fetched response into what web_fetch returns: a title, Markdown content and absolute links.

HTML goes through trafilatura (main-content extraction to Markdown) on an lxml tree, which never
runs scripts; plain text and Markdown pass through; JSON and XML are shown as code; PDF text
comes from pypdf.
"""

from __future__ import annotations

import io
import json
import re
import urllib.parse
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from corral_common.errors import BadGateway, UnsupportedMediaType

from corral_websearch.net.fetcher import Fetched

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
TEXT_TYPES = frozenset({"text/plain", "text/markdown", "text/x-markdown"})
JSON_TYPES = frozenset({"application/json", "text/json"})
XML_TYPES = frozenset({"application/xml", "text/xml"})
PDF_TYPE = "application/pdf"
TRUNCATED = "\n\n[content truncated]"
_URL_IN_TEXT = re.compile(r"https?://[^\s<>()\[\]\"'`]+")
_MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)")


@dataclass(frozen=True)
class Page:
    """A page as web_fetch returns it, plus the URL it came from."""

    url: str
    title: str
    content: str
    links: list[str] = field(default_factory=list)


def readable(mime: str) -> bool:
    """Content types web_fetch reads (an undeclared type is sniffed)."""
    return (not mime or mime in HTML_TYPES | TEXT_TYPES | JSON_TYPES | XML_TYPES or mime == PDF_TYPE
            or mime.endswith(("+json", "+xml")))


def extract(fetched: Fetched, max_chars: int = 100_000) -> Page:
    """Title, Markdown content and absolute links of a fetched page."""
    mime = fetched.content_type or _sniff(fetched.body)
    if mime in HTML_TYPES:
        page = _from_html(fetched)
    elif mime == PDF_TYPE:
        page = _from_pdf(fetched)
    elif mime in JSON_TYPES or mime.endswith("+json"):
        page = _from_code(fetched, "json")
    elif mime in XML_TYPES or mime.endswith("+xml"):
        page = _from_code(fetched, "xml")
    elif mime in TEXT_TYPES or mime.startswith("text/"):
        page = _from_text(fetched)
    else:
        raise UnsupportedMediaType(f"{fetched.url} is {mime}, which web_fetch does not read")
    if len(page.content) > max_chars:
        page = Page(page.url, page.title, page.content[:max_chars].rstrip() + TRUNCATED, page.links)
    return page


def _sniff(body: bytes) -> str:
    head = body[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")) or b"<body" in head:
        return "text/html"
    if head.startswith(b"%pdf-"):
        return PDF_TYPE
    return "text/plain"


def _text(fetched: Fetched) -> str:
    try:
        return fetched.body.decode(fetched.charset or "utf-8", errors="replace")
    except LookupError:
        return fetched.body.decode("utf-8", errors="replace")


def absolute_links(base: str, hrefs: list[str]) -> list[str]:
    """http(s) links resolved against ``base``, fragments dropped, first occurrence kept."""
    links: list[str] = []
    for href in hrefs:
        url, _ = urllib.parse.urldefrag(urllib.parse.urljoin(base, href.strip()))
        if urllib.parse.urlsplit(url).scheme in ("http", "https") and url not in links:
            links.append(url)
    return links


@cache
def _trafilatura_config() -> Any:
    """trafilatura's defaults, except that short pages still count as content (its floor is 250 chars)."""
    from trafilatura.settings import use_config

    config = use_config()
    config.set("DEFAULT", "MIN_EXTRACTED_SIZE", "25")
    config.set("DEFAULT", "EXTRACTION_TIMEOUT", "0")  # its timeout uses signals, which worker threads lack
    return config


def _from_html(fetched: Fetched) -> Page:
    import trafilatura  # heavy: imported when the first page arrives
    from trafilatura.utils import load_html

    tree = load_html(_text(fetched) if fetched.charset else fetched.body)
    if tree is None:
        return Page(fetched.url, "", "", [])
    title = " ".join((tree.findtext(".//title") or "").split())
    base = tree.find(".//base[@href]")
    base_url = urllib.parse.urljoin(fetched.url, base.get("href")) if base is not None else fetched.url
    links = absolute_links(base_url, [a.get("href", "") for a in tree.iter("a") if a.get("href")])
    content = trafilatura.extract(tree, url=base_url, output_format="markdown", include_links=True,
                                  include_formatting=True, include_tables=True, favor_recall=True,
                                  config=_trafilatura_config())
    if not content:
        body = tree.find(".//body")
        content = " ".join((body if body is not None else tree).text_content().split())
    if not title:
        title = (content.lstrip("# ").splitlines() or [""])[0][:200]
    return Page(fetched.url, title, content.strip(), links)


def _from_text(fetched: Fetched) -> Page:
    text = _text(fetched).strip()
    first = next((line for line in text.splitlines() if line.strip()), "")
    title = first.lstrip("#").strip()[:200] if first.startswith("#") else ""
    hrefs = _MARKDOWN_LINK.findall(text) + _URL_IN_TEXT.findall(text)
    return Page(fetched.url, title, text, absolute_links(fetched.url, hrefs))


def _from_code(fetched: Fetched, language: str) -> Page:
    text = _text(fetched).strip()
    if language == "json":
        try:
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except ValueError:
            pass
    return Page(fetched.url, "", f"```{language}\n{text}\n```", absolute_links(fetched.url, _URL_IN_TEXT.findall(text)))


def _from_pdf(fetched: Fetched) -> Page:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(fetched.body))
        text = "\n\n".join((page.extract_text() or "").strip() for page in reader.pages).strip()
        title = str((reader.metadata or {}).get("/Title") or "")
    except (PyPdfError, ValueError, KeyError) as exc:
        raise BadGateway(f"{fetched.url} is a PDF that could not be read: {exc}") from None
    return Page(fetched.url, title.strip(), text, absolute_links(fetched.url, _URL_IN_TEXT.findall(text)))
