"""``pagewalk picture``: the page states behind the drawing against the kernel's own
numbers, PNG and SVG files, and the HTML page in a real headless Chromium (from the
system packages: the README's test command installs them): it loads without console
errors, makes no network request, draws, and a hover names the right page."""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from conftest import PAGE, cli, pagemap_entry, requires_root, smaps_of, smaps_rollup, without_module
from test_pagemap_scan import MANY, MAPPINGS

pytestmark = requires_root
FRAME = (1 << 55) - 1
LAYOUT = """
import mmap as m
a = mmap(600); write(a, 600)                      # present
z = mmap(300); read(z, 300)                       # the zero page
f = open(os.__file__, 'rb'); fm = m.mmap(f.fileno(), 0, prot=m.PROT_READ)
s = sum(fm[i] for i in range(0, len(fm), PAGE))   # file-backed
g = mmap(50)                                      # untouched
h = mmap(200); write(h, 100)                      # half present, half untouched
result = [a, z, g, h]
"""


def space_of(pid: int):
    from pagewalk import Process
    from pagewalk.analysis.picture import AddressSpace

    with Process(pid) as p:
        return AddressSpace.take(p)


def test_page_states_match_the_kernel(specimen):
    from pagewalk.analysis.picture import ANONYMOUS, PALETTE, STATES, UNTOUCHED, ZERO

    a, z, g, h = specimen.run(LAYOUT)
    space = space_of(specimen.pid)
    totals = space.totals()
    kernel = smaps_rollup(specimen.pid)
    # Rss counts present anonymous, file-backed and huge pages, not the zero page
    assert (totals["anonymous"] + totals["file"] + totals["huge"]) * PAGE == kernel["Rss"]
    assert sum(totals.values()) == space.total_pages == sum(
        (m.end - m.start) // PAGE for m in space.mappings)
    for start, pages, state in ((a, 600, ANONYMOUS), (z, 300, ZERO), (g, 50, UNTOUCHED)):
        i = next(i for i, m in enumerate(space.mappings) if m.start == start)
        row = space.counts(np.array([space.first[i]]), np.array([space.first[i + 1]]))[0]
        assert row[state] == pages and row.sum() == pages, (STATES[state], row)
        # a band of only this mapping draws in exactly its state's colour
        pixels = space.raster(int(space.first[i]), pages, 40, 3).reshape(-1, 3)
        assert (pixels == PALETTE[state].astype(np.uint8)).all()
    assert smaps_of(specimen.pid, z)["Rss"] == 0  # the kernel agrees those 300 pages hold nothing
    # a pixel standing for half present, half untouched pages has the colour of the mix
    i = next(i for i, m in enumerate(space.mappings) if m.start == h)
    mixed = space.raster(int(space.first[i]), 200, 1, 1)[0, 0]
    assert np.abs(mixed.astype(int) - (PALETTE[ANONYMOUS] + PALETTE[UNTOUCHED]) / 2).max() <= 1


def test_bands_stay_few_and_legible_with_ten_thousand_mappings(specimen):
    specimen.run(MANY)
    specimen.run("r = mmap(16 << 18, prot='', noreserve=True); result = r")  # a 64 GiB reservation
    space = space_of(specimen.pid)
    assert len(space.mappings) > MAPPINGS
    bands = space.bands()
    assert len(bands) <= 41
    assert sum(b.pages for b in bands) == space.total_pages  # every page in exactly one band
    assert all(b.first + b.pages == c.first for b, c in zip(bands, bands[1:]))
    assert max(b.pages for b in bands) >= 16 << 18  # the reservation is a band of its own


def test_png_and_svg_files(specimen, tmp_path):
    pytest.importorskip("matplotlib", reason="the test extra installs matplotlib")
    from PIL import Image

    from pagewalk.analysis.picture import PALETTE

    specimen.run(LAYOUT)
    png, svg = tmp_path / "map.png", tmp_path / "map.svg"
    for path in (png, svg):
        r = cli("picture", specimen.pid, "-o", path)
        assert r.returncode == 0, r.stderr
        assert os.stat(path).st_mode & 0o777 == 0o600  # where the frames are is physical information
    with Image.open(png) as image:
        assert image.size == (1600, 1000)
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    colours = {tuple(p) for p in np.unique(pixels, axis=0).tolist()}
    for state in (1, 2, 4):  # present, file, zero: each drawn somewhere
        assert tuple(PALETTE[state].astype(int)) in colours
    root = ET.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    text = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    assert f"PID {specimen.pid}" in text and "[anon]" in text  # text stays text: searchable


def test_picture_bad_input_and_missing_extra(specimen, tmp_path):
    r = cli("picture", specimen.pid, "-o", tmp_path / "map.gif")
    assert r.returncode == 2 and ".png, .svg or .html" in r.stderr
    env = without_module(tmp_path, "matplotlib")
    r = cli("picture", specimen.pid, "-o", tmp_path / "map.png", env=env)
    assert r.returncode == 1 and "pagewalk[pictures]" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert not (tmp_path / "map.png").exists()
    r = cli("picture", specimen.pid, "-o", tmp_path / "map.html", env=env)  # HTML needs numpy only
    assert r.returncode == 0, r.stderr


def test_html_page_in_a_real_browser(specimen, tmp_path, browser):
    import json

    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    a, z, g, h = specimen.run(LAYOUT)
    # a process may name itself so as to end or swallow a script element: the page must not care
    specimen.run("with open('/proc/self/comm', 'w') as f: f.write('<!--<script>')")
    path = tmp_path / "map.html"
    r = cli("picture", specimen.pid, "-o", path)
    assert r.returncode == 0, r.stderr
    assert os.stat(path).st_mode & 0o777 == 0o600
    browser.get_log("performance")  # drop what earlier pages logged
    browser.get(path.as_uri())
    assert browser.execute_script("return window.pagewalk && window.pagewalk.ready") is True
    assert "(<!--<script>)" in browser.find_element("id", "title").text
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    requests = [json.loads(e["message"])["message"] for e in browser.get_log("performance")]
    urls = [m["params"]["request"]["url"] for m in requests if m["method"] == "Network.requestWillBeSent"]
    assert urls and all(u == path.as_uri() or u.startswith("data:") for u in urls), urls
    # draws: the whole-space view is not blank
    drawn = browser.execute_script(
        "const c = document.getElementById('map'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] !== 255 || d[i+1] !== 255 || d[i+2] !== 255) n++;"
        "return n;")
    assert drawn > 1000
    # zoom to single pages at a known address; hover it; the tooltip names that page and its frame
    target = a + 5 * PAGE
    assert browser.execute_script(f"return window.pagewalk.zoomTo({target}, 16)") is True
    where = browser.execute_script(f"return window.pagewalk.locate({target})")
    pixel = browser.execute_script(
        "const c = document.getElementById('map'), r = c.getBoundingClientRect();"
        f"const x = Math.floor(({where['x']} - r.left) * c.width / r.width), y = Math.floor(({where['y']} - r.top) * c.height / r.height);"
        "return Array.from(c.getContext('2d').getImageData(x, y, 1, 1).data.slice(0, 3));")
    assert pixel == [0x00, 0x72, 0xB2]  # present
    action = ActionBuilder(browser)
    action.pointer_action.move_to_location(int(where["x"]), int(where["y"]))
    action.perform()
    tip = browser.find_element("id", "tip").text
    pfn = pagemap_entry(specimen.pid, target) & FRAME
    assert f"address {target:#x}" in tip and "state: present" in tip, tip
    assert f"PFN {pfn:#x}" in tip, tip
    # At 1-pixel cells, a pointer near the right end of a row names the page the test
    # itself works out from the canvas's geometry (its border left out) and the maps
    maps = [[int(x, 16) for x in line.split()[0].split("-")] for line in open(f"/proc/{specimen.pid}/maps")]
    maps = [(start, end) for start, end in maps if start < 1 << 47]  # [vsyscall] is not drawn

    def address_of(picture_page: int) -> int:
        for start, end in maps:
            if picture_page < (end - start) // PAGE:
                return start + picture_page * PAGE
            picture_page -= (end - start) // PAGE
        raise AssertionError("past the end")

    assert browser.execute_script(f"return window.pagewalk.zoomTo({target}, 1)") is True
    left, top, sx, sy, width, px, k, row0 = browser.execute_script(
        "const c = document.getElementById('map'), r = c.getBoundingClientRect(), v = window.pagewalk.view;"
        "return [r.left + c.clientLeft, r.top + c.clientTop, c.clientWidth / c.width, c.clientHeight / c.height,"
        "        c.width, v.px, v.k, v.top];")
    assert (px, k) == (1, 1)
    cols = width // px
    x, y = math.floor(left + (cols - 0.5) * px * sx), math.floor(top + 1.5 * px * sy)  # the second row, its end
    col, row = math.floor((x - left) / sx) // px, math.floor((y - top) / sy) // px
    action = ActionBuilder(browser)
    action.pointer_action.move_to_location(x, y)
    action.perform()
    tip = browser.find_element("id", "tip").text
    expected = address_of((row0 + row) * cols + col)
    assert col >= cols - 2 and f"address {expected:#x}" in tip, (tip, hex(expected))
    # the table of mappings sorts by a column when its header is clicked
    with open(f"/proc/{specimen.pid}/maps") as f:
        spans = [[int(x, 16) for x in line.split()[0].split("-")] for line in f]
    sizes = [end - start for start, end in spans if start < 1 << 47]
    for expected in (max(sizes), min(sizes)):  # a number column sorts largest first, then the other way
        browser.find_element("css selector", "th[data-key='size']").click()
        cells = browser.find_elements("css selector", "#maps tbody tr:first-child td")
        assert int(cells[1].text, 16) - int(cells[0].text, 16) == expected


def test_unprivileged_picture_shows_no_frames():
    """Without CAP_SYS_ADMIN the kernel hides frames: the page says so, carries no
    PFN and no physical panel, and still draws the states pagemap gives."""
    import json

    from importlib import resources

    from specimen import Specimen

    # The specimen drops to uid 65534, which cannot read this interpreter's files (they
    # are root's here): what it will import must be imported before it forks.
    import pagewalk.output.picture_html  # noqa: F401
    import pagewalk.analysis.picture  # noqa: F401

    resources.files("pagewalk.output").joinpath("picture.html").read_text()
    with Specimen(uid=65534) as other:
        doc, totals = other.run(
            "from pagewalk.kernel import probes; from pagewalk import Process\n"
            "probes.pfn_visible.cache_clear(); probes.zero_pfns.cache_clear()  # filled while root\n"
            "from pagewalk.analysis.picture import AddressSpace\nfrom pagewalk.output.picture_html import document\n"
            "a = mmap(300); write(a, 300)\n"
            "with Process(os.getpid()) as p: s = AddressSpace.take(p)\n"
            "result = [document(s), s.totals()]")
    data = json.loads(doc.split('<script id="data" type="application/json">')[1].split("</script>")[0])
    assert data["pfn_visible"] is False and data["physical"] is None and data["runs"]["kf_lo"] is None
    pfns = np.frombuffer(__import__("base64").b64decode(data["runs"]["pfn"]), dtype="<f8")
    assert (pfns == -1).all()  # unknown, never 0
    assert totals["anonymous"] >= 300
