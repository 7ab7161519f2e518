"""Static HTML pages: one per analysed image, and an index linking them.

A shared layer: it knows no system. Callers hand it plain data, a page as
sections, each one

    {"title": str,            # e.g. "Forgery (TruFor)"
     "lines": [str],          # plain sentences, each explaining one figure
     "missing": str | None,   # why the section has nothing to show (said instead)
     "pictures": [{"src": path, "caption": str}],
     "bars": [(label, fraction in [0, 1])]}   # optional: a probability chart

and index entries {"name", "page", "thumb", "figures": [str], "error"}. Paths
may be absolute or relative to the working directory; links are written
relative to the page. Pages are HTML + CSS only (no script, nothing fetched
from elsewhere), laid out to wrap on a phone, and written atomically.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
import urllib.parse

CSS = """\
body{font-family:system-ui,sans-serif;margin:0 auto;padding:12px;max-width:1280px;
color:#222;line-height:1.4}
h1{font-size:1.4em;word-break:break-all}
section{border-top:1px solid #ccc;padding:8px 0}
h2{font-size:1.15em;margin:4px 0}
.pics{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;flex:1 1 300px;max-width:100%}
figure img{max-width:100%;height:auto;border:1px solid #ddd}
figcaption{font-size:.9em;color:#555;word-break:break-all}
.missing{color:#8a5a00;font-style:italic}
.failed{color:#b00}
.bar{display:flex;align-items:center;gap:6px;font-size:.9em;max-width:480px}
.bar span.label{flex:0 0 12em;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.bar span.track{flex:1;background:#eee;height:.8em}
.bar span.fill{display:block;background:#3465a4;height:100%}
.grid{display:flex;flex-wrap:wrap;gap:12px}
.card{flex:1 1 220px;max-width:320px;border:1px solid #ccc;padding:8px}
.card img{width:100%;height:auto}
.card ul{padding-left:1.1em;margin:4px 0;font-size:.9em}
"""


def link(target: str | os.PathLike, page: str | os.PathLike) -> str:
  """`target` as a URL relative to the folder of `page` (escaped for a src/href)."""
  rel = os.path.relpath(os.path.abspath(target), os.path.dirname(os.path.abspath(page)))
  return urllib.parse.quote(Path(rel).as_posix())


def _document(title: str, body: str) -> str:
  return (
      "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
      "<meta name='viewport' content='width=device-width, initial-scale=1'>"
      f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n"
      f"<body>\n{body}\n</body></html>\n"
  )


def _bars(bars) -> str:
  rows = []
  for label, value in bars:
    pct = max(0.0, min(1.0, float(value))) * 100
    rows.append(
        f"<div class='bar'><span class='label'>{html.escape(str(label))}</span>"
        f"<span class='track'><span class='fill' style='width:{pct:.1f}%'></span></span>"
        f"<span>{float(value):.3f}</span></div>"
    )
  return "".join(rows)


def _section(section: dict, page) -> str:
  parts = [f"<section><h2>{html.escape(section['title'])}</h2>"]
  if section.get("missing"):
    parts.append(f"<p class='missing'>Not available: {html.escape(section['missing'])}</p>")
  parts += [f"<p>{html.escape(line)}</p>" for line in section.get("lines", [])]
  parts.append(_bars(section.get("bars") or []))
  pictures = section.get("pictures") or []
  if pictures:
    figures = "".join(
        # Each picture links to itself: on a phone a tap opens it at full size.
        f"<figure><a href='{link(p['src'], page)}'><img src='{link(p['src'], page)}' "
        f"alt='{html.escape(p['caption'], True)}'></a>"
        f"<figcaption>{html.escape(p['caption'])}</figcaption></figure>"
        for p in pictures
    )
    parts.append(f"<div class='pics'>{figures}</div>")
  return "".join(parts) + "</section>"


def page_html(page: str | os.PathLike, title: str, sections: list[dict], *, home=None) -> str:
  """The HTML of one page at path `page` (links are made relative to it)."""
  back = f"<p><a href='{link(home, page)}'>&larr; all images</a></p>" if home else ""
  body = back + f"<h1>{html.escape(title)}</h1>" + "\n".join(_section(s, page) for s in sections)
  return _document(title, body)


def _card(entry: dict, page) -> str:
  name = html.escape(entry["name"])
  head = f"<a href='{link(entry['page'], page)}'>{name}</a>" if entry.get("page") else name
  thumb = entry.get("thumb")
  img = f"<img src='{link(thumb, page)}' alt='{name}'>" if thumb else ""
  if entry.get("page") and img:
    img = f"<a href='{link(entry['page'], page)}'>{img}</a>"
  failed = (
      f"<p class='failed'>failed: {html.escape(entry['error'])}</p>" if entry.get("error") else ""
  )
  figures = "".join(f"<li>{html.escape(f)}</li>" for f in entry.get("figures", []))
  return f"<div class='card'>{img}<h2>{head}</h2>{failed}<ul>{figures}</ul></div>"


def index_html(page: str | os.PathLike, title: str, entries: list[dict], intro: str = "") -> str:
  """The HTML of an index page: a card per entry (thumbnail, link, headline figures)."""
  lead = f"<p>{html.escape(intro)}</p>" if intro else ""
  cards = "\n".join(_card(e, page) for e in entries)
  return _document(title, f"<h1>{html.escape(title)}</h1>{lead}<div class='grid'>\n{cards}\n</div>")


def write_text(path: str | os.PathLike, text: str) -> None:
  """Write a file atomically: a reader sees the old one or the new one, never part of it."""
  path = Path(path)
  tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
  tmp.write_text(text, encoding="utf-8")
  os.replace(tmp, path)
