"""Keeps the cutover console open in headless Chromium (Debian's) for benches/console/run.sh.

Prints `open` once the page shows it is connected, then keeps it open (the page polls by itself)
until a line arrives on stdin; then prints how many times the page fetched /admin/status while
open and exits. Usage: python3 open.py http://127.0.0.1:PORT/
"""

import select
import sys

from playwright.sync_api import expect, sync_playwright


def main():
    url = sys.argv[1]
    polls = 0

    def seen(response):
        nonlocal polls
        if response.url.endswith("/admin/status"):
            polls += 1

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        page = browser.new_page()
        page.on("response", seen)
        page.goto(url)
        expect(page.locator("#conn")).to_have_attribute("data-state", "connected", timeout=20_000)
        polls = 0
        print("open", flush=True)
        # Let Playwright deliver the page's events while waiting for the stop line.
        while not select.select([sys.stdin], [], [], 0)[0]:
            page.wait_for_timeout(250)
        sys.stdin.readline()
        print(polls, flush=True)
        browser.close()


if __name__ == "__main__":
    main()
