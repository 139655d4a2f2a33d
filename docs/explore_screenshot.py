"""The README's picture of the explore page on a real run, taken in Debian's headless Chromium.

    .venv/bin/mtmh serve runs/ml-100k &      # wait for http://localhost:8000/healthz
    .venv/bin/python docs/explore_screenshot.py --query "star wars"

It does what a person does: searches a title, picks the first hit and waits for the three
lists at the slider's default alpha. tests/test_serve.py drives the same page with checks.
"""

from __future__ import annotations

import argparse

from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://localhost:8000")
    parser.add_argument("--query", default="star wars")
    parser.add_argument("--out", default="docs/img/explore-ml100k.png")
    args = parser.parse_args()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.goto(args.url + "/")
        page.locator("#q").fill(args.query)
        page.wait_for_selector("#results button")
        page.locator("#results button").first.click()
        page.wait_for_selector("#list-merged li")
        page.wait_for_function("document.getElementById('mix').textContent !== ''")
        page.screenshot(path=args.out)
        browser.close()


if __name__ == "__main__":
    main()
