"""docs/serve.png: jaxmlp serve's draw page with a 7 drawn on it, in headless Chromium.

    python scripts/serve_screenshot.py runs/records/simard2003 --out docs/serve.png

Serves the run's parent folder on a free port, draws the digit with mouse strokes (as
tests/test_browser.py does), waits for Python's check, and saves the page.
"""
import argparse
import shutil
import threading
from pathlib import Path

from jaxmlp.app._serve import make_server

# Canvas pixels (280×280): a 7 with a bar through it.
STROKES = [[(72, 58), (208, 58), (128, 232)], [(112, 146), (184, 146)]]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run folder with a model.npz")
    parser.add_argument("--out", type=Path, default=Path("docs/serve.png"))
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    server = make_server(args.run.parent, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/draw?path={args.run.name}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 870})
        page.goto(url)
        box = page.locator("#pad").bounding_box()
        for i, points in enumerate(STROKES, 1):
            page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
            page.mouse.down()
            for x, y in points[1:]:
                page.mouse.move(box["x"] + x, box["y"] + y, steps=10)
            page.mouse.up()
            page.wait_for_function(f"() => window.jaxmlpDraw.strokes === {i} && "
                                   "window.jaxmlpDraw.maxDiff !== null")
        page.wait_for_selector("#python[data-state=agree]")
        page.screenshot(path=args.out)
        print(f"wrote {args.out}: {page.inner_text('#python')}")
        browser.close()
    server.shutdown()


if __name__ == "__main__":
    main()
