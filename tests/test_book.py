"""Checks of the book itself, as opposed to the vaelab package.

Source checks (always run): the table of contents and the chapters agree; every notebook
stores a complete, error-free run of exactly its current code at book (or paper) scale;
every notebook starts with the generated Colab install cell; the environment pins.

Render checks (marker ``book``, need ``--book-html=PATH``): each chapter page of the built
book is loaded in headless Chromium from a local web server, with every other host made
unresolvable, and must show typeset math, no raw TeX delimiters, loaded images and (for
notebooks) an "open in Colab" link. A full-page screenshot of each page is saved to
``_build/screenshots/`` for a human to look at.
"""
from __future__ import annotations

import functools
import http.server
import json
import re
import threading
import tomllib
import urllib.parse
from pathlib import Path

import pytest
import yaml

from tools import nbmeta

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC_NAMES = nbmeta.toc_files(yaml.safe_load((ROOT / "_toc.yml").read_text()))
TOC_PATHS = {name: nbmeta.toc_path(ROOT, name) for name in TOC_NAMES}
NOTEBOOKS = [p for p in TOC_PATHS.values() if p is not None and p.suffix == ".ipynb"]
NOTEBOOK_NAMES = [n for n, p in TOC_PATHS.items() if p is not None and p.suffix == ".ipynb"]

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--window-size=1280,900",
    # Any host but the local server fails to resolve, so a page that needs a CDN shows it.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
RAW_TEX = ("\\(", "\\)", "\\[", "$$")


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


# --- source checks ------------------------------------------------------------------------


def test_every_toc_entry_exists():
    missing = [name for name, path in TOC_PATHS.items() if path is None]
    assert not missing, f"_toc.yml names files that do not exist: {missing}"


def test_every_chapter_is_in_the_toc():
    chapters = {
        p for p in (ROOT / "book").rglob("*")
        if p.suffix in (".md", ".ipynb") and ".ipynb_checkpoints" not in p.parts
    }
    orphans = sorted(_relative(p) for p in chapters - set(TOC_PATHS.values()))
    assert not orphans, f"chapters missing from _toc.yml (they would not be built): {orphans}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_relative)
def test_stored_run_is_complete_and_current(path):
    problems = nbmeta.check_stored_run(_read(path))
    assert not problems, f"{_relative(path)}:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_relative)
def test_first_code_cell_is_the_generated_install_cell(path):
    cells = nbmeta.code_cells(_read(path))
    assert cells, "no code cells"
    first = cells[0]
    source = first["source"] if isinstance(first["source"], str) else "".join(first["source"])
    fix = "run `python3 dev.py sync-install`"
    assert source == nbmeta.install_cell_source(CONFIG), f"install cell out of date: {fix}"
    tags = first.get("metadata", {}).get("tags", [])
    assert nbmeta.INSTALL_TAG in tags and nbmeta.HIDE_TAG in tags, f"install cell tags {tags}: {fix}"
    later = [i for i, c in enumerate(cells[1:], 1) if nbmeta.INSTALL_TAG in c.get("metadata", {}).get("tags", [])]
    assert not later, f"code cells {later} are also tagged {nbmeta.INSTALL_TAG}"


def test_environment_pins():
    lines = [
        line.split("#")[0].strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
    ]
    requirements = [line for line in lines if line]
    assert "torch==2.13.0" in requirements, "torch must be pinned (an unpinned torch pulls CUDA wheels)"
    assert "jupyter-book==1.0.4.post1" in requirements
    unpinned = [r for r in requirements if "==" not in r]
    assert not unpinned, f"requirements.txt must pin every package: {unpinned}"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch = [d for d in project["dependencies"] if re.match(r"torch\b", d)]
    assert torch and ">=" in torch[0] and "==" not in torch[0], (
        f"pyproject's torch requirement must be loose (>=) so Colab keeps its own torch: {torch}"
    )


# --- render checks ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def book_html(request) -> Path:
    path = Path(request.config.getoption("--book-html")).resolve()
    if not (path / "index.html").is_file():
        pytest.fail(f"no built book at {path} (the strict build failed or did not run)")
    return path


@pytest.fixture(scope="session")
def server(book_html):
    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(QuietHandler, directory=str(book_html))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            pytest.fail(f"{path} missing: apt-get install -y chromium chromium-driver (dev.py test does)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # with an explicit driver too, selenium-manager is not used
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


WAIT_FOR_MATHJAX = """
const done = arguments[arguments.length - 1];
const start = Date.now();
const needsMath = document.querySelector('.math') !== null;
(function poll() {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    MathJax.startup.promise.then(() => done('typeset'), (e) => done('mathjax error: ' + e));
  } else if (!needsMath && Date.now() - start > 2000) {
    done('no math');
  } else if (Date.now() - start > 30000) {
    done('MathJax never started');
  } else {
    setTimeout(poll, 100);
  }
})();
"""

LOAD_IMAGES = """
const done = arguments[arguments.length - 1];
const images = [...document.images];
images.forEach((img) => { img.loading = 'eager'; });
const report = () => done(images.map((img) => ({
  src: img.currentSrc || img.src, ok: img.complete && img.naturalWidth > 0})));
Promise.all(images.map((img) => img.decode().catch(() => null))).then(report);
setTimeout(report, 20000);
"""

# Code (cells, outputs, inline code) is not prose: a regex or a LaTeX label may show "\\[".
COLLECT = """
const hide = document.createElement('style');
hide.textContent = 'pre, code { display: none !important; }';
document.head.appendChild(hide);
const prose = document.body.innerText;
hide.remove();
return {
  hasMath: document.querySelector('.math') !== null,
  typeset: document.querySelectorAll('mjx-container').length,
  prose: prose,
  colab: [...document.querySelectorAll('a[href*="colab.research.google.com"]')].map((a) => a.href),
  citations: document.querySelectorAll('[role="doc-biblioentry"], div.citation').length,
  mathjaxScripts: [...document.scripts].map((s) => s.src).filter((s) => /mathjax/i.test(s)),
};
"""


# What scrolls sideways at the test's window width (1280 px): a code cell's input, a display
# equation, a cell's printed output or table, or the page itself. Each must fit the text
# column, so a reader sees it whole (_static/vaelab.css wraps printed lines).
OVERFLOW = """
const wide = (e) => e.scrollWidth > e.clientWidth;  // even one pixel shows a scrollbar
const describe = (kind) => (e) => ({kind: kind, text: e.textContent.trim().slice(0, 90),
                                    scrollWidth: e.scrollWidth, clientWidth: e.clientWidth});
return [
  ...[...document.querySelectorAll('div.cell_input pre')].filter(wide).map(describe('code cell')),
  ...[...document.querySelectorAll('mjx-container[display="true"]')].filter(wide).map(describe('equation')),
  ...[...document.querySelectorAll('div.cell_output pre, div.cell_output .pst-scrollable-table-container')]
      .filter(wide).map(describe('output')),
  ...(document.documentElement.scrollWidth > window.innerWidth
      ? [{kind: 'page', text: '', scrollWidth: document.documentElement.scrollWidth,
          clientWidth: window.innerWidth}] : []),
];
"""


def _requested_urls(driver) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def _save_full_page_screenshot(driver, path: Path) -> None:
    """Grow the window to the page's height (capped), so one screenshot shows all of it."""
    width, height = driver.get_window_size()["width"], driver.get_window_size()["height"]
    page_height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(page_height + 200, 16000))
    driver.execute_async_script("requestAnimationFrame(() => requestAnimationFrame(arguments[0]))")
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    driver.set_window_size(width, height)


@pytest.fixture(scope="session")
def rendered(browser, server, book_html):
    """``rendered(name)``: what Chromium shows for the page of toc entry ``name`` (loaded once)."""
    cache = {}

    def render(name: str) -> dict:
        if name not in cache:
            page = book_html / f"{name}.html"
            assert page.is_file(), f"{page} was not built"
            _requested_urls(browser)  # drain the log of the previous page
            browser.get(f"{server}/{name}.html")
            mathjax = browser.execute_async_script(WAIT_FOR_MATHJAX)
            images = browser.execute_async_script(LOAD_IMAGES)
            _save_full_page_screenshot(browser, book_html.parent / "screenshots" / f"{Path(name).name}.png")
            overflow = browser.execute_script(OVERFLOW)
            cache[name] = {**browser.execute_script(COLLECT), "mathjax": mathjax, "overflow": overflow,
                           "images": images, "requests": _requested_urls(browser)}
        return cache[name]

    return render


@pytest.mark.book
def test_strict_build_passed(book_html):
    status_file = book_html.parent / "build-status.json"
    if not status_file.is_file():
        pytest.skip(f"{status_file} missing: this book was not built by `python3 dev.py`")
    status = json.loads(status_file.read_text())
    assert status["returncode"] == 0, "strict book build failed:\n" + "\n".join(status["problems"])


@pytest.mark.book
def test_every_built_chapter_page_is_in_the_toc(book_html):
    built = {str(p.relative_to(book_html).with_suffix("")) for p in (book_html / "book").glob("*.html")}
    assert built <= set(TOC_NAMES), f"built pages not in _toc.yml: {sorted(built - set(TOC_NAMES))}"


@pytest.mark.book
def test_mathjax_is_served_locally(book_html):
    html = (book_html / f"{TOC_NAMES[0]}.html").read_text()
    sources = re.findall(r'<script[^>]+src="([^"]*mathjax[^"]*)"', html, flags=re.IGNORECASE)
    assert sources, "the root page loads no MathJax (does it have math?)"
    assert all(s.startswith(("_static/", "../_static/")) for s in sources), sources


@pytest.mark.book
@pytest.mark.parametrize("name", TOC_NAMES)
def test_math_is_typeset(rendered, name):
    page = rendered(name)
    if page["hasMath"]:
        assert page["mathjax"] == "typeset", page["mathjax"]
        assert page["typeset"] > 0, "page has math but no mjx-container"


@pytest.mark.book
@pytest.mark.parametrize("name", TOC_NAMES)
def test_no_raw_tex_in_the_visible_text(rendered, name):
    prose = rendered(name)["prose"]
    found = {d: prose[max(0, prose.find(d) - 40): prose.find(d) + 40] for d in RAW_TEX if d in prose}
    assert not found, f"raw TeX delimiters in the rendered text: {found}"


@pytest.mark.book
@pytest.mark.parametrize("name", TOC_NAMES)
def test_no_code_cell_equation_or_output_scrolls_sideways(rendered, name):
    wide = rendered(name)["overflow"]
    assert not wide, (
        "wider than the text column at 1280 px (break the equation; keep code lines to about 76 characters): "
        + "; ".join(f"{w['kind']} ({w['scrollWidth']} > {w['clientWidth']} px): {w['text']!r}" for w in wide)
    )


@pytest.mark.book
@pytest.mark.parametrize("name", TOC_NAMES)
def test_every_image_loads(rendered, name):
    broken = [image["src"] for image in rendered(name)["images"] if not image["ok"]]
    assert not broken, f"images that did not load: {broken}"


@pytest.mark.book
@pytest.mark.parametrize("name", TOC_NAMES)
def test_no_request_leaves_the_machine(rendered, name):
    def local(url: str) -> bool:
        parts = urllib.parse.urlsplit(url)
        internal = ("data", "blob", "about", "chrome", "chrome-extension", "devtools")
        return parts.scheme in internal or parts.hostname in ("127.0.0.1", "localhost")

    remote = [url for url in rendered(name)["requests"] if not local(url)]
    assert not remote, f"the page requests other hosts: {remote}"


@pytest.mark.book
@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_notebook_page_links_to_colab(rendered, name):
    owner_repo = urllib.parse.urlsplit(CONFIG["repository"]["url"]).path.strip("/").removesuffix(".git")
    expected = (f"https://colab.research.google.com/github/{owner_repo}/blob/"
                f"{CONFIG['repository']['branch']}/{name}.ipynb")
    assert expected in rendered(name)["colab"], f"no launch link {expected}; found {rendered(name)['colab']}"


@pytest.mark.book
def test_bibliography_lists_entries(rendered):
    pages = [n for n in TOC_NAMES if n.endswith("bibliography")]
    assert pages, "no bibliography page in _toc.yml"
    assert rendered(pages[0])["citations"] > 0, "the bibliography page lists no entries"
