"""The `ssl-zoo serve` page in headless Chromium (Debian's, driven by Playwright) against a real server on
127.0.0.1: type a prompt, press Generate, see the text appear; mask a word, see the candidates.

Needs /usr/bin/chromium (`.ci/run` installs it and sets SSL_ZOO_REQUIRE_BROWSER=1, so that CI fails
rather than skips). The screenshot goes to tmp_path, and to $SSL_ZOO_SCREENSHOT when set (the README's
docs/serve.png was taken so, against real checkpoints: $SSL_ZOO_SERVE_GPT / $SSL_ZOO_SERVE_BERT).
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import ROOT, free_port

CHROMIUM = os.environ.get("SSL_ZOO_CHROMIUM", "/usr/bin/chromium")
# As root in a closed network: no sandbox, and none of Chromium's own background connections.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]

if not Path(CHROMIUM).exists():
    if os.environ.get("SSL_ZOO_REQUIRE_BROWSER"):
        raise RuntimeError(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def server_url(gpt_run, bert_run):
    gpt = os.environ.get("SSL_ZOO_SERVE_GPT") or gpt_run[0] / "checkpoints" / "last.ckpt"
    bert = os.environ.get("SSL_ZOO_SERVE_BERT") or bert_run[0] / "checkpoints" / "last.ckpt"
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "ssl_zoo", "serve", f"checkpoint={gpt}", f"checkpoint2={bert}",
                                f"port={port}", "limits.max_new_tokens=5000"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    assert process.poll() is None, process.stdout.read()
    yield url
    process.terminate()
    assert process.wait(timeout=20) is not None


@pytest.fixture
def page(server_url):
    """The page in a fresh headless Chromium, its model pickers filled from /models."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 820})
        page.goto(server_url)
        expect(page.locator("#gpt-model option")).to_have_count(1)
        expect(page.locator("#bert-model option")).to_have_count(1)
        yield page
        browser.close()


def test_the_page_writes_a_continuation_and_fills_a_mask(page, tmp_path):
    from playwright.sync_api import expect

    expect(page.locator("#loaded")).to_contain_text("gpt-")
    prompt = os.environ.get("SSL_ZOO_SERVE_PROMPT", "the cat")
    page.fill("#prompt", prompt)
    page.locator("#max-new-tokens").fill("80")
    page.click("#generate")
    expect(page.locator("#gen-status")).to_contain_text("tokens/s", timeout=60_000)
    assert page.text_content("#shown-prompt") == prompt
    assert len(page.text_content("#continuation")) >= 20
    expect(page.locator("#stop")).to_be_disabled()

    page.fill("#fill-text", os.environ.get("SSL_ZOO_SERVE_MASKED", "the cat [MASK] on the [MASK]."))
    page.click("#fill")
    expect(page.locator(".mask")).to_have_count(2)
    expect(page.locator(".mask").first.locator(".candidate")).to_have_count(5)
    assert "[MASK]" not in page.text_content("#filled")

    page.fill("#fill-text", "the cat sat")  # no mask: the server's one line shows on the page
    page.click("#fill")
    expect(page.locator("#fill-error")).to_contain_text("the text has no [MASK]")
    page.fill("#fill-text", os.environ.get("SSL_ZOO_SERVE_MASKED", "the cat [MASK] on the [MASK]."))
    page.click("#fill")
    expect(page.locator("#fill-error")).to_have_text("")

    shot = tmp_path / "serve.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("SSL_ZOO_SCREENSHOT"):
        shutil.copy(shot, os.environ["SSL_ZOO_SCREENSHOT"])


def test_the_stop_button_ends_a_long_generation(page, server_url):
    from playwright.sync_api import expect

    page.fill("#prompt", "the dog")
    page.locator("#max-new-tokens").fill("5000")  # seconds of writing: time to press stop
    page.click("#generate")
    page.wait_for_function("document.getElementById('continuation').textContent.length > 5")
    page.click("#stop")
    expect(page.locator("#gen-status")).to_have_text("stopped")
    expect(page.locator("#generate")).to_be_enabled()
    deadline = time.time() + 10
    while httpx.get(f"{server_url}/health").json()["generating"] and time.time() < deadline:
        time.sleep(0.05)
    assert httpx.get(f"{server_url}/health").json()["generating"] == 0
