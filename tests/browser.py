"""Lay out an HTML page in headless Chromium (Debian's `chromium`) and measure it.

    python -m tests.browser results/reference/report.html [--png shot.png]

layout() loads a copy of the page with a probe script appended, dumps the DOM after load and
reads back what the script measured: how far the page scrolls sideways and, per table, its
width against the width of the box that holds it. A table wider than its box is clipped
(it only shows by scrolling its box).
"""
from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

WIDTH = 1280
PROBE = """<script>
window.addEventListener('load', () => {
  const root = document.documentElement, vw = root.clientWidth;
  const tables = [...document.querySelectorAll('table')].map((t, i) => {
    const box = t.closest('.scroll') || t.parentElement;
    const h = t.closest('div, section, body').previousElementSibling;
    return {i, heading: h ? h.textContent.slice(0, 60) : '', table_px: Math.ceil(t.scrollWidth),
            box_px: box.clientWidth, right_px: Math.ceil(t.getBoundingClientRect().right)};
  });
  const out = document.createElement('pre');
  out.id = 'layout-probe';
  out.textContent = JSON.stringify({viewport_px: vw, page_px: root.scrollWidth, tables});
  document.body.appendChild(out);
});
</script>"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run(args: list[str], timeout: int = 120) -> subprocess.CompletedProcess:
    exe = chromium()
    if exe is None:
        raise FileNotFoundError("chromium not found: apt-get install -y chromium")
    base = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--mute-audio",
            f"--window-size={WIDTH},1000", "--virtual-time-budget=5000"]
    return subprocess.run(base + args, capture_output=True, text=True, timeout=timeout)


def layout(page: Path) -> dict:
    """{'viewport_px', 'page_px', 'tables': [{'i', 'heading', 'table_px', 'box_px', 'right_px'}]}"""
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.html"
        probe.write_text(Path(page).read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"),
                         encoding="utf-8")
        p = _run(["--dump-dom", probe.as_uri()])
    m = re.search(r'<pre id="layout-probe">(.*?)</pre>', p.stdout, re.S)
    if not m:
        raise RuntimeError(f"chromium gave no layout (exit {p.returncode}): {p.stderr.strip()[-300:]}")
    return json.loads(html.unescape(m.group(1)))


def clipped(lay: dict) -> list[str]:
    """What does not fit: the page scrolling sideways, or a table wider than its box."""
    out = []
    if lay["page_px"] > lay["viewport_px"]:
        out.append(f"page is {lay['page_px']} px wide in a {lay['viewport_px']} px window")
    for t in lay["tables"]:
        if t["table_px"] > t["box_px"]:
            out.append(f"table {t['i']} after '{t['heading']}' is {t['table_px']} px in a {t['box_px']} px box")
    return out


def screenshot(page: Path, png: Path, height: int = 1400) -> Path:
    p = _run([f"--window-size={WIDTH},{height}", f"--screenshot={png}", Path(page).resolve().as_uri()])
    if not Path(png).is_file():
        raise RuntimeError(f"chromium wrote no screenshot (exit {p.returncode}): {p.stderr.strip()[-300:]}")
    return Path(png)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.browser", description=__doc__)
    ap.add_argument("page", type=Path)
    ap.add_argument("--png", type=Path, help="also write a screenshot")
    ap.add_argument("--height", type=int, default=1400)
    a = ap.parse_args(argv)
    lay = layout(a.page)
    for t in lay["tables"]:
        print(f"table {t['i']:2d} {t['table_px']:5d} px in {t['box_px']:5d} px  {t['heading']}")
    bad = clipped(lay)
    print("\n".join(bad) or f"nothing clipped at {WIDTH} px")
    if a.png:
        print(f"screenshot: {screenshot(a.page, a.png, a.height)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
