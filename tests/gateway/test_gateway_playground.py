"""The playground page in headless Chromium (Debian's package, driven by Playwright):
type a prompt, watch the answer stream in, for an engine model (SSE) and an agent
(Socket.IO), and keep a screenshot of each."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.servers import AgentStack

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="module")
def stack(engine_address: str, agent_stack) -> Iterator[AgentStack]:
    with agent_stack(engine_address) as live:
        yield live


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[object]:
    if not os.path.exists(CHROMIUM):
        message = "Debian's chromium is not installed; run `make browser` (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    playwright_api = pytest.importorskip("playwright.async_api")
    async with playwright_api.async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield launched
        await launched.close()


async def ask(page, model: str, prompt: str) -> str:
    await page.select_option("#model", model)
    await page.fill("#max-tokens", "16")
    await page.fill("#prompt", prompt)
    await page.click("#send")
    # Streamed text shows up in the last assistant bubble; the button comes back once done.
    answer = page.locator(".msg.assistant").last
    await answer.wait_for(state="visible")
    await page.wait_for_function("document.querySelector('.msg.assistant:last-of-type').textContent.trim().length > 0", timeout=60_000)
    await page.wait_for_function("!document.getElementById('send').disabled", timeout=60_000)
    return await answer.text_content()


async def test_playground_streams_a_model_and_an_agent(stack, browser, tmp_path):
    page = await browser.new_page(viewport={"width": 1000, "height": 760})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        await page.goto(f"{stack.gateway.url}/")  # redirects to /playground
        assert page.url.endswith("/playground")
        await page.wait_for_function("document.querySelectorAll('#model option').length > 1")
        options = await page.eval_on_selector_all("#model option", "els => els.map(e => e.value)")
        assert "agent/chat" in options and not options[0].startswith("agent/")

        text = await ask(page, options[0], "Say hello to Lisbon.")
        assert text.strip()
        assert await page.text_content("#transport") == "model over SSE"
        assert "completion" in await page.text_content("#usage") and "ms" in await page.text_content("#ttft")
        await page.screenshot(path=str(tmp_path / "playground-model.png"), full_page=True)

        text = await ask(page, "agent/chat", "Hi! My name is Ada.")
        assert text.strip()
        assert await page.text_content("#transport") == "agent over Socket.IO"
        usage = await page.text_content("#usage")
        assert "prompt" in usage and "completion" in usage
        assert "ms" in await page.text_content("#ttft")
        await page.screenshot(path=str(tmp_path / "playground-agent.png"), full_page=True)
        assert (tmp_path / "playground-agent.png").stat().st_size > 10_000
        assert await page.locator(".msg.error").count() == 0, await page.locator(".msg.error").all_text_contents()
        assert errors == []
    finally:
        await page.close()
