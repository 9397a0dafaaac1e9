"""Drives the live view in a real browser (Debian's chromium, headless, through
Playwright) for tests/ui.rs, and prints what it saw as one JSON line.

    ui_browser.py view  URL [SCREENSHOT]   frames, boxes, the room, ROI and zone drawing, camera picker
    ui_browser.py token URL                a page opened with ?token= works, controls too
    ui_browser.py privacy URL              privacy mode: a neutral picture, boxes still drawn
    ui_browser.py picker URL               every camera of the picker in turn: its frames drawn
    ui_browser.py controls URL             privacy mode turned on from the page: the picture
                                           goes neutral; paused: no boxes are left drawn
    ui_browser.py fall URL                 privacy mode with the pose model: stick figures
                                           and no boxes; a fall alert shown and acknowledged

The test asserts; this script only acts and observes (every wait is bounded).
"""

import json
import shutil
import sys
import time

from playwright.sync_api import sync_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

PIXEL_SPREAD = """() => {
  const c = document.getElementById('frame');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let sum = 0, sq = 0, n = 0;
  for (let i = 0; i < d.length; i += 4 * 97) { const v = d[i + 1]; sum += v; sq += v * v; n++; }
  const m = sum / n;
  return Math.sqrt(Math.max(0, sq / n - m * m));
}"""

FIRST_BOX = """() => {
  const b = document.querySelector('#overlay rect.box');
  if (!b) return null;
  const a = (k) => b.getAttribute(k);
  return { x: +a('x'), y: +a('y'), width: +a('width'), height: +a('height'),
           confidence: +a('data-confidence'), track: a('data-track'), frame: +a('data-frame'),
           shown: window.orionView.shown.seq };
}"""


def drag(page, x0, y0, x1, y1):
    """Drags on the picture between two points given as fractions of it."""
    box = page.locator("#overlay").bounding_box()
    page.mouse.move(box["x"] + x0 * box["width"], box["y"] + y0 * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + x1 * box["width"], box["y"] + y1 * box["height"], steps=8)
    page.mouse.up()


def reply_after(page, action):
    """The reply the page shows after `action` (a new one)."""
    page.evaluate("document.getElementById('reply').textContent = ''")
    action()
    page.wait_for_function("document.getElementById('reply').textContent.length > 0", timeout=30000)
    return page.locator("#reply").text_content()


def open_page(p, url):
    browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    started = time.monotonic()
    page.goto(url)
    page.wait_for_function("window.orionView && window.orionView.drawn > 0", timeout=5000)
    return browser, page, (time.monotonic() - started) * 1000


def view(p, url, screenshot):
    out = {}
    browser, page, out["first_frame_ms"] = open_page(p, url)
    out["pixel_spread"] = page.evaluate(PIXEL_SPREAD)
    page.wait_for_function("document.querySelector('#overlay rect.box')", timeout=30000)
    out["box"] = page.evaluate(FIRST_BOX)
    out["status_text"] = page.locator("#status").text_content()
    page.wait_for_function("document.getElementById('presence').textContent.startsWith('occupied')", timeout=30000)
    out["presence_text"] = page.locator("#presence").text_content()
    page.wait_for_function("document.querySelectorAll('#events li').length > 0", timeout=30000)
    out["events_text"] = page.locator("#events").text_content()

    page.click("#drawroi")
    out["roi_reply"] = reply_after(page, lambda: drag(page, 0.2, 0.2, 0.7, 0.8))
    page.wait_for_function("document.querySelector('#overlay rect.roi')", timeout=10000)
    page.click("#drawroi")
    out["invalid_reply"] = reply_after(page, lambda: drag(page, 0.6, 0.3, 1.3, 0.6))

    page.fill("#zonename", "bed")
    page.select_option("#zonekind", "rest")
    page.click("#drawzone")
    out["zone_reply"] = reply_after(page, lambda: drag(page, 0.1, 0.5, 0.5, 0.95))
    page.wait_for_function("document.querySelector('#overlay polygon.zone.rest[data-name=\"bed\"]')", timeout=10000)
    out["zone_drawn"] = True
    if screenshot:
        page.wait_for_timeout(1500)
        page.screenshot(path=screenshot)
    out["zone_delete_reply"] = reply_after(page, lambda: page.click('#zones button[data-zone="bed"]'))
    page.wait_for_function("!document.querySelector('#overlay polygon.zone')", timeout=10000)
    out["zone_deleted"] = True

    cameras = page.evaluate("window.orionView.cameras.map(c => c.instance_id)")
    out["cameras"] = cameras
    if len(cameras) > 1:
        pick(page, cameras[1])
        out["switched_to"] = page.evaluate("window.orionView.cam.instance_id")
    browser.close()
    return out


def token(p, url):
    out = {}
    browser, page, out["first_frame_ms"] = open_page(p, url)
    out["address_after"] = page.evaluate("location.search")
    out["pause_reply"] = reply_after(page, lambda: page.click("#pause"))
    out["resume_reply"] = reply_after(page, lambda: page.click("#resume"))
    browser.close()
    return out


def privacy(p, url):
    out = {}
    browser, page, out["first_frame_ms"] = open_page(p, url)
    page.wait_for_function("document.querySelector('#overlay rect.box')", timeout=30000)
    out["box"] = page.evaluate(FIRST_BOX)
    out["pixel_spread"] = page.evaluate(PIXEL_SPREAD)
    out["privacy_badge"] = page.locator("#privacy").is_visible()
    browser.close()
    return out


def wait_drawn(page, frames):
    """Waits until `frames` more frames are drawn."""
    drawn = page.evaluate("window.orionView.drawn")
    page.wait_for_function(f"window.orionView.drawn > {drawn + frames}", timeout=15000)


def pick(page, camera):
    """Picks `camera` in the picker and waits until its frames are drawn."""
    drawn = page.evaluate("window.orionView.drawn")
    page.select_option("#camera", camera)
    page.wait_for_function(
        f"window.orionView.cam.instance_id === {json.dumps(camera)} && window.orionView.drawn > {drawn + 2}",
        timeout=15000,
    )


def picker(p, url):
    out = {"shown": []}
    browser, page, out["first_frame_ms"] = open_page(p, url)
    out["cameras"] = page.evaluate("window.orionView.cameras.map(c => c.instance_id)")
    for camera in out["cameras"]:
        pick(page, camera)
        size = page.evaluate("[document.getElementById('frame').width, document.getElementById('frame').height]")
        out["shown"].append({"camera": camera, "size": size})
    browser.close()
    return out


def controls(p, url):
    out = {}
    browser, page, out["first_frame_ms"] = open_page(p, url)
    page.wait_for_function("document.querySelector('#overlay rect.box')", timeout=30000)
    out["spread_before"] = page.evaluate(PIXEL_SPREAD)
    out["privacy_reply"] = reply_after(page, lambda: page.click("#privon"))
    page.wait_for_function("!document.getElementById('privacy').hidden", timeout=10000)
    wait_drawn(page, 3)
    out["spread_privacy"] = page.evaluate(PIXEL_SPREAD)
    out["pause_reply"] = reply_after(page, lambda: page.click("#pause"))
    page.wait_for_function("window.orionView.paused", timeout=10000)
    wait_drawn(page, 3)
    out["boxes_paused"] = page.evaluate("document.querySelectorAll('#overlay rect.box, #overlay g.skeleton').length")
    browser.close()
    return out


def fall(p, url):
    out = {}
    browser, page, out["first_frame_ms"] = open_page(p, url)
    page.wait_for_function("document.querySelectorAll('#overlay g.skeleton line.bone').length >= 8", timeout=60000)
    out["bones"] = page.evaluate("document.querySelectorAll('#overlay g.skeleton line.bone').length")
    out["boxes"] = page.evaluate("document.querySelectorAll('#overlay rect.box').length")
    out["pixel_spread"] = page.evaluate(PIXEL_SPREAD)
    page.wait_for_function("document.querySelectorAll('#alerts li').length > 0", timeout=60000)
    out["alert_text"] = page.locator("#alerts").text_content()
    out["label"] = page.locator("#overlay text.box-label").first.text_content()
    out["ack_reply"] = reply_after(page, lambda: page.click("#alerts button[data-ack]"))
    page.wait_for_function("document.querySelectorAll('#alerts li').length === 0", timeout=30000)
    out["alerts_after"] = page.evaluate("document.querySelectorAll('#alerts li').length")
    browser.close()
    return out


def main() -> int:
    scenario, url = sys.argv[1], sys.argv[2]
    with sync_playwright() as p:
        if scenario == "view":
            out = view(p, url, sys.argv[3] if len(sys.argv) > 3 else None)
        elif scenario == "token":
            out = token(p, url)
        elif scenario == "privacy":
            out = privacy(p, url)
        elif scenario == "picker":
            out = picker(p, url)
        elif scenario == "controls":
            out = controls(p, url)
        elif scenario == "fall":
            out = fall(p, url)
        else:
            print(f"unknown scenario {scenario}", file=sys.stderr)
            return 2
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
