"""Check the built HTML documentation offline (run by ``.ci/docs`` after sphinx-build).

Usage: ``python docs/check_built.py [docs/_build/html]``; exit code 0 if every check passes,
1 with one line per problem otherwise.

Checks
------
1. Every script ``examples/plot_*.py`` has its gallery page, and that page shows at least one
   image of its own (``images/sphx_glr_<name>_*.png``) that exists and is a non-empty PNG.
2. Every image on ``performance/index.html`` exists and is a non-empty PNG.
3. Internal links: every relative ``href``/``src`` of every page resolves to a file of the
   build, and every ``#fragment`` to an element ``id`` (or ``name``) in the target page.
   (``sphinx -b linkcheck`` would need the network for external links; those are not checked.)
"""

from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Page(HTMLParser):
    """Collects the links, image sources and element ids of one HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.images: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v for k, v in attrs if v is not None}
        for key in ("id", "name") if tag == "a" else ("id",):
            if key in a:
                self.ids.add(a[key])
        if tag == "a" and "href" in a:
            self.links.append(a["href"])
        elif tag == "img" and "src" in a:
            self.images.append(a["src"])
            self.links.append(a["src"])
        elif tag in ("link", "script", "iframe", "source") and (a.get("href") or a.get("src")):
            self.links.append(a.get("href") or a.get("src") or "")


def _parse(path: Path, cache: dict[Path, _Page]) -> _Page:
    if path not in cache:
        page = _Page()
        page.feed(path.read_text(encoding="utf-8", errors="replace"))
        cache[path] = page
    return cache[path]


def _is_png(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(8)
        return head == PNG_MAGIC and path.stat().st_size > 1000
    except OSError:
        return False


def check(html: Path) -> list[str]:
    problems: list[str] = []
    cache: dict[Path, _Page] = {}
    if not (html / "index.html").is_file():
        return [f"{html}: no index.html (was the documentation built?)"]

    # 1. the gallery
    for script in sorted((ROOT / "examples").glob("plot_*.py")):
        page_path = html / "auto_examples" / f"{script.stem}.html"
        if not page_path.is_file():
            problems.append(f"gallery: {script.name} has no page {page_path.relative_to(html)}")
            continue
        own = [s for s in _parse(page_path, cache).images if f"sphx_glr_{script.stem}_" in s
               and "thumb" not in s]
        if not own:
            problems.append(f"gallery: {page_path.relative_to(html)} shows no figure of its own")
        for src in own:
            target = (page_path.parent / unquote(urlsplit(src).path)).resolve()
            if not _is_png(target):
                problems.append(f"gallery: {page_path.relative_to(html)}: {src} is missing or "
                                "not a PNG")

    # 2. the performance page
    perf = html / "performance" / "index.html"
    if not perf.is_file():
        problems.append("performance: performance/index.html missing")
    else:
        imgs = _parse(perf, cache).images
        if not imgs:
            problems.append("performance: performance/index.html has no figure")
        for src in imgs:
            if not _is_png((perf.parent / unquote(urlsplit(src).path)).resolve()):
                problems.append(f"performance: {src} is missing or not a PNG")

    # 3. internal links and fragments
    n_links = 0
    for page_path in sorted(html.rglob("*.html")):
        page = _parse(page_path, cache)
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme or link.startswith(("//", "mailto:", "javascript:", "data:")):
                continue
            n_links += 1
            target = page_path if not parts.path else (
                page_path.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            rel = page_path.relative_to(html)
            if not target.exists():
                problems.append(f"link: {rel}: {link} -> no such file")
                continue
            if parts.fragment and target.suffix == ".html":
                frag = unquote(parts.fragment)
                if frag not in _parse(target, cache).ids:
                    problems.append(f"link: {rel}: {link} -> no id {frag!r} in "
                                    f"{target.relative_to(html) if target.is_relative_to(html) else target}")
    if n_links == 0:
        problems.append("link: no internal link found at all (is this the HTML build?)")
    print(f"check_built: {len(cache)} pages, {n_links} internal links and sources checked, "
          f"{len(list((ROOT / 'examples').glob('plot_*.py')))} gallery examples")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    html = Path(args[0]) if args else ROOT / "docs" / "_build" / "html"
    problems = check(html.resolve())
    for p in problems:
        print(f"check_built: {p}", file=sys.stderr)
    print("check_built: " + ("FAILED" if problems else "passed"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
