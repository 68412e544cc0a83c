"""Check the built site: no broken internal link, and screenshots of two pages in headless Chromium.

Run after the build, from the repository root:

    python docs/check_site.py [docs/_build/html] [--shots DIR]

1. Crawls every HTML file of the build: each ``href``/``src`` to a local target must name a file
   that exists, and a ``#fragment`` must be an ``id`` (or ``name``) in the target page. External
   links (``http(s)://``, ``mailto:``) are not followed (the build runs offline).
2. Opens the front page and a tutorial page in headless Chromium (Debian's ``chromium``) with
   the network off and saves screenshots to ``--shots`` (default ``<build>/_screenshots``); it also
   dumps the tutorial's DOM after its scripts ran and checks that MathJax typeset its maths
   from the vendored script. Without Chromium (as in CI) this part is skipped, saying so.

Exit status: 0 when every check ran and passed (or was skipped for want of Chromium), 1 on a
broken link or a failed browser check.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

EXTERNAL = ("http://", "https://", "mailto:", "ftp://", "data:", "javascript:")
#: Pages to screenshot: the front page and one tutorial.
PAGES = ("index.html", "auto_tutorials/plot_01_quickstart.html")
#: A page whose maths must be typeset by MathJax (the tutorial above writes the ELBO in LaTeX).
MATH_PAGE = "auto_tutorials/plot_01_quickstart.html"


class _Links(HTMLParser):
    """The link targets (href, src) and the anchors (id, name) of one page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.targets: list[str] = []
        self.anchors: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if value is None:
                continue
            if key in ("id", "name"):
                self.anchors.add(value)
            elif key == "href" or (key == "src" and tag in ("img", "script", "iframe")):
                self.targets.append(value)


def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return parser


def broken_links(root: Path) -> list[str]:
    """``page: target (why)`` for each internal link of the site under ``root`` that goes nowhere."""
    pages = sorted(root.rglob("*.html"))
    parsed = {p.resolve(): _parse(p) for p in pages}
    problems = []
    for page, links in parsed.items():
        for target in links.targets:
            if not target or target.startswith(EXTERNAL):
                continue
            parts = urlsplit(target)
            if parts.scheme or parts.netloc:  # another scheme or a //host link: not ours
                continue
            dest = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if dest.is_dir():
                dest = dest / "index.html"
            where = f"{page.relative_to(root.resolve())}: {target}"
            if not dest.is_file():
                problems.append(
                    f"{where} (no file {dest.relative_to(root.resolve()) if dest.is_relative_to(root.resolve()) else dest})"
                )
                continue
            fragment = unquote(parts.fragment)
            if fragment and dest.suffix == ".html":
                anchors = parsed[dest].anchors if dest in parsed else _parse(dest).anchors
                if fragment not in anchors:
                    problems.append(f"{where} (no anchor #{fragment})")
    return problems


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _chromium(binary: str, *args: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    profile = tempfile.mkdtemp(prefix="lvm-docs-chromium-")
    try:
        cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
               "--hide-scrollbars", "--virtual-time-budget=10000", *args]  # fmt: skip
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def browser_checks(root: Path, shots: Path, binary: str) -> list[str]:
    """Screenshots of :data:`PAGES` into ``shots``; the typeset maths of :data:`MATH_PAGE`. Problems found."""
    problems = []
    shots.mkdir(parents=True, exist_ok=True)
    # no network: a proxy that does not exist, so only file:// loads
    offline = ["--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>"]
    for page in PAGES:
        out = shots / (Path(page).stem + ".png")
        out.unlink(missing_ok=True)
        proc = _chromium(binary, *offline, "--window-size=1280,1600", f"--screenshot={out}",
                         (root / page).resolve().as_uri())  # fmt: skip
        if not out.is_file() or out.stat().st_size == 0:
            problems.append(f"no screenshot of {page}: {proc.stderr.strip()[-500:]}")
        else:
            print(f"screenshot: {out} ({out.stat().st_size} bytes)")
    dom = _chromium(binary, *offline, "--dump-dom", (root / MATH_PAGE).resolve().as_uri()).stdout
    typeset = len(re.findall(r"<mjx-container", dom))
    if typeset == 0:
        problems.append(f"{MATH_PAGE}: MathJax typeset no maths (no <mjx-container> after the scripts ran)")
    else:
        print(f"{MATH_PAGE}: MathJax typeset {typeset} formula(s) offline, from the vendored script")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", nargs="?", default="docs/_build/html", type=Path)
    parser.add_argument(
        "--shots", type=Path, default=None, help="screenshot folder (default <build>/_screenshots)"
    )
    args = parser.parse_args(argv)
    root: Path = args.build
    if not (root / "index.html").is_file():
        print(f"check_site: {root}/index.html not found; build the site first", file=sys.stderr)
        return 1
    problems = broken_links(root)
    n_pages = sum(1 for _ in root.rglob("*.html"))
    print(f"links: {n_pages} pages crawled, {len(problems)} broken internal link(s)")
    binary = find_chromium()
    if binary is None:
        print(
            "check_site: no Chromium installed (apt-get install chromium): screenshots and the MathJax check skipped"
        )
    else:
        problems += browser_checks(root, args.shots or root / "_screenshots", binary)
    for p in problems:
        print(f"  {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
