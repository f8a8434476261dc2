"""Headless Chromium for the browser tests: Debian's `/usr/bin/chromium`, driven by
Playwright (which brings no browser of its own here: `.ci/run` installs the package).

Pages reach loopback only: every other host resolves to nothing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
]


def chromium_path() -> str:
    for candidate in ("chromium", "chromium-browser", "/usr/bin/chromium"):
        found = shutil.which(candidate)
        if found:
            return found
    pytest.fail("Chromium is not installed: `apt-get install -y chromium` (Debian package "
                "chromium, /usr/bin/chromium); the browser tests need it")


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(),
                                             args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def overflowing_elements(page: Page) -> list[str]:
    """Elements whose right edge passes the viewport, outside any box that scrolls.

    An element inside a container with its own horizontal scrolling (overflow-x auto or
    scroll) is allowed to be wider: the page itself does not scroll sideways. A box that
    hides what overflows it does not count: that would be clipping.
    """
    return page.evaluate(
        """() => {
        const width = document.documentElement.clientWidth;
        const scrolls = (el) => {
            for (let p = el.parentElement; p; p = p.parentElement) {
                const o = getComputedStyle(p).overflowX;
                if (o === 'auto' || o === 'scroll') return true;
            }
            return false;
        };
        const out = [];
        for (const el of document.body.querySelectorAll('*')) {
            const r = el.getBoundingClientRect();
            if (r.width === 0 && r.height === 0) continue;
            if ((r.right > width + 1 || r.left < -1) && !scrolls(el)) {
                out.push(`${el.tagName.toLowerCase()}.${el.className.baseVal ?? el.className}`
                         + ` ${Math.round(r.left)}..${Math.round(r.right)} > ${width}`);
            }
        }
        if (document.documentElement.scrollWidth > width + 1) {
            out.push(`page scrollWidth ${document.documentElement.scrollWidth} > ${width}`);
        }
        return out;
    }"""
    )


def clipped_text(page: Page) -> list[str]:
    """Elements whose text is cut off: content wider or taller than the box that hides it."""
    return page.evaluate(
        """() => {
        const out = [];
        for (const el of document.body.querySelectorAll('*')) {
            const s = getComputedStyle(el);
            const hides = s.overflowX === 'hidden' || s.overflowY === 'hidden'
                || s.textOverflow === 'ellipsis';
            if (!hides || !el.textContent.trim()) continue;
            if (el.scrollWidth > el.clientWidth + 1 || el.scrollHeight > el.clientHeight + 1) {
                const text = el.textContent.trim().slice(0, 40);
                out.push(`${el.tagName.toLowerCase()}.${el.className}: ${text}`);
            }
        }
        return out;
    }"""
    )
