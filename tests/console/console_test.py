"""The cutover console in Debian's Chromium, driven by Playwright (run by tests/console_browser.rs).

Asserts on text and state, never pixels, and waits with Playwright's bounded waits, never sleeps.
Talks to its test over stdout/stdin: prints STOP and waits for STOPPED, prints START and waits
for `STARTED <pid>`, prints PASS at the end. Environment: CONSOLE_URL, PROXY_URL, ADMIN_TOKEN,
ATTRIBUTE_URL, SCRIPT_URL, MARKUP_HOSTS (newline-separated), FIRST_PID.
"""

import os
import sys
import threading
import urllib.error
import urllib.request

from playwright.sync_api import expect, sync_playwright

CONSOLE = os.environ["CONSOLE_URL"]
PROXY = os.environ["PROXY_URL"]
TOKEN = os.environ["ADMIN_TOKEN"]
ATTRIBUTE_URL = os.environ["ATTRIBUTE_URL"]
SCRIPT_URL = os.environ["SCRIPT_URL"]
MARKUP_HOSTS = os.environ["MARKUP_HOSTS"].split("\n")
WAIT_MS = 20_000


def say(line):
    print(line, flush=True)


def ask(line, expect_prefix):
    say(line)
    answer = sys.stdin.readline().strip()
    assert answer.startswith(expect_prefix), f"asked {line}, got {answer!r}"
    return answer


def storefront_of_fresh_shopper(path="/"):
    """A new shopper: no cookie, no override. Which storefront answered?"""
    with urllib.request.urlopen(PROXY + path, timeout=5) as r:
        return r.headers["x-cutover-storefront"]


class Traffic(threading.Thread):
    """Steady light traffic pinned to each side in turn (fresh connections, no cookie jar); errors
    while the proxy restarts are expected and ignored."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()

    def run(self):
        n = 0
        while not self.stop.wait(0.03):  # pacing of the load, not synchronisation
            n += 1
            side = "old" if n % 2 else "new"
            req = urllib.request.Request(f"{PROXY}/page/{n % 13}", headers={"x-cutover-force": side})
            try:
                urllib.request.urlopen(req, timeout=2).read()
            except (urllib.error.URLError, OSError):
                pass


def responses(page, storefront):
    text = page.locator(f'tr[data-storefront="{storefront}"] td.responses').first.text_content()
    return int(text)


def set_share(page, percent):
    page.fill("#share-input", str(percent))
    page.click("#share-form button[type=submit]")
    expect(page.locator("#confirm")).to_be_visible()
    expect(page.locator("#confirm-text")).to_contain_text(f"to {percent:.2f}%")
    page.click("#confirm-yes")


def main():
    traffic = Traffic()
    traffic.start()
    with sync_playwright() as p:
        # Playwright's default (chromium_sandbox=False) adds --no-sandbox: Chromium's own sandbox
        # refuses to start as root, which is how tests/run runs here.
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.set_default_timeout(WAIT_MS)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(CONSOLE)
        expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
        expect(page.locator("#proc")).to_contain_text("pid " + os.environ["FIRST_PID"])
        say("connected")

        # 1. Both storefronts' figures move with traffic.
        before = {sf: responses(page, sf) for sf in ("old", "new")}
        page.wait_for_function(
            """(b) => ['old', 'new'].every((sf) => Number(document.querySelector(
                 `tr[data-storefront="${sf}"] td.responses`).textContent) > b[sf])""",
            arg=before,
        )
        page.wait_for_function(
            """() => ['old', 'new'].every((side) => Number(document.querySelector(
                 `[data-fig="requests_per_second"][data-side="${side}"]`).textContent) > 0)"""
        )
        expect(page.locator(".card", has_text="Requests/s")).to_contain_text("cutover_requests_total")
        # Every number names the series Grafana shows it from.
        expect(page.locator("#storefronts thead")).to_contain_text("cutover_requests_in_flight")
        expect(page.locator("tr[data-storefront=new] td.responses")).to_have_attribute("title", "cutover_requests_total")
        say("figures move")

        # A feature that is off has no section: no [fleet] here.
        expect(page.locator("#fleet")).to_be_hidden()
        expect(page.locator("#rollout-state")).to_contain_text("phase idle")
        expect(page.locator("#shadow")).to_be_visible()

        # 2. Escape cancels a lever and sends nothing; no token and a wrong token are refused,
        # and the page says so; nothing changes.
        page.fill("#share-input", "100")
        page.click("#share-form button[type=submit]")
        expect(page.locator("#confirm")).to_be_visible()
        page.keyboard.press("Escape")
        expect(page.locator("#result")).to_have_text("cancelled: nothing was sent")
        set_share(page, 100)
        expect(page.locator("#result")).to_contain_text("refused (401): this admin API needs `Authorization: Bearer <token>`")
        page.fill("#token", "not-the-token")
        page.click("#token-form button[type=submit]")
        set_share(page, 100)
        expect(page.locator("#result")).to_contain_text("refused (401): wrong token")
        expect(page.locator("#result")).to_have_attribute("data-kind", "error")
        expect(page.locator("#share-text")).to_contain_text("Share on new (new): 10.00%")
        say("wrong token refused")

        # 3. With the right token (entered once, kept for the tab), the share set through the
        # page moves new shoppers: by keyboard first, share 0 -> everyone fresh on old.
        page.fill("#token", TOKEN)
        page.click("#token-form button[type=submit]")
        assert page.evaluate("sessionStorage.getItem('cutover-admin-token')") == TOKEN
        assert page.evaluate("document.cookie") == "", "the token is never a cookie"
        page.fill("#share-input", "0")
        page.focus("#share-input")
        page.keyboard.press("Enter")
        expect(page.locator("#confirm-no")).to_be_focused()  # the safe answer is the default
        page.keyboard.press("Shift+Tab")
        expect(page.locator("#confirm-yes")).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.locator("#result")).to_contain_text("share on new now 0.00% (was 10.00%)")
        assert {storefront_of_fresh_shopper() for _ in range(10)} == {"old"}
        set_share(page, 100)
        expect(page.locator("#result")).to_contain_text("share on new now 100.00% (was 0.00%)")
        expect(page.locator("#share-text")).to_contain_text("Share on new (new): 100.00%")
        assert {storefront_of_fresh_shopper() for _ in range(10)} == {"new"}
        expect(page.locator("#reloads")).to_contain_text("admin-split")
        say("share follows")

        # 4. URLs carrying markup are shown as text and run nothing.
        expect(page.locator("#missed td.url", has_text=ATTRIBUTE_URL)).to_have_count(1)
        expect(page.locator("#missed td.url", has_text=SCRIPT_URL)).to_have_count(1)
        expect(page.locator("#shadow-kinds")).to_contain_text(ATTRIBUTE_URL)
        expect(page.locator("#inventory-rows")).to_contain_text("onmouseover")
        for host in MARKUP_HOSTS:
            # Per-host missed redirects keep the Host header as sent: raw markup, shown as text.
            expect(page.locator("#missed td", has_text=host)).to_have_count(1)
        for cell in page.locator("td", has_text="onmouseover").all():
            cell.hover()
        assert page.evaluate("typeof window.pwned") == "undefined"
        assert page.locator("[onmouseover], [onerror]").count() == 0
        assert page.evaluate("document.scripts.length") == 1
        assert page.evaluate("document.images.length") == 0
        say("markup shown as text")

        # 5. Readable on a phone, and dark by the system setting.
        light = page.evaluate("getComputedStyle(document.body).backgroundColor")
        page.emulate_media(color_scheme="dark")
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") != light
        page.set_viewport_size({"width": 390, "height": 844})
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "no sideways scroll"
        page.set_viewport_size({"width": 1200, "height": 900})
        page.emulate_media(color_scheme="light")
        say("phone and dark ok")

        # 6. The other levers, each confirmed, each with its visible result.
        def lever(button, result):
            page.click(button)
            expect(page.locator("#confirm")).to_be_visible()
            page.click("#confirm-yes")
            expect(page.locator("#result")).to_contain_text(result)
            expect(page.locator("#result")).to_have_attribute("data-kind", "ok")

        lever("[data-rollout=start]", "start: rollout started at step 1/3 (10%)")
        expect(page.locator("#rollout-steps li[data-current]")).to_have_text("10% (current)")
        expect(page.locator("#share-text")).to_contain_text("Share on new (new): 10.00%")
        lever("[data-rollout=pause]", "pause:")
        expect(page.locator("#rollout-state")).to_contain_text("phase paused")
        lever("[data-rollout=resume]", "resume:")
        expect(page.locator("#rollout-state")).to_contain_text("phase running")
        lever("[data-rollout=abort]", "abort:")
        expect(page.locator("#share-text")).to_contain_text("Share on new (new): 0.00%")
        lever("tr[data-storefront=new] button", "evacuated new, generation")
        expect(page.locator("tr[data-storefront=new] td.evacuated")).to_contain_text("(override)")
        expect(page.locator("tr[data-storefront=old] td.evacuated")).to_have_text("no")
        lever("#reload", "reloaded: generation")
        say("levers")

        # 7. A proxy restart: the page says it is disconnected, then reconnects by itself.
        ask("STOP", "STOPPED")
        expect(page.locator("#conn")).to_have_attribute("data-state", "disconnected")
        expect(page.locator("#conn")).to_contain_text("disconnected, retrying")
        pid = ask("START", "STARTED").split()[1]
        expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
        expect(page.locator("#proc")).to_contain_text("pid " + pid)
        # What was set through the page survived the restart (state files).
        expect(page.locator("#share-text")).to_contain_text("Share on new (new): 0.00%")
        say("reconnected")

        assert not errors, f"errors in the page: {errors}"
        browser.close()
    traffic.stop.set()
    say("PASS")


if __name__ == "__main__":
    main()
