"""One look for the HTML reports (`maskgate inspect`, `maskgate noise`): a plain, self-contained page."""
from __future__ import annotations

import html
from pathlib import Path

STYLE = ("body{font-family:system-ui,sans-serif;max-width:1000px;margin:auto;padding:12px}"
         "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
         "img{max-width:100%}")


def write_page(path: Path, title: str, parts: list[str]) -> None:
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>" + "\n".join(parts) + "</body></html>")
    Path(path).write_text(page, encoding="utf-8")
