"""`/docs` in a real headless browser: Debian's Chromium (installed by `make browser`) loads the page from the
adapter, Swagger UI renders the OpenAPI document, and every operation of the document is on the page; nothing is
loaded from any other host."""

from __future__ import annotations

import shutil

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--disable-sync",
    "--disable-component-update",
    "--disable-default-apps",
    "--no-first-run",
    "--window-size=1280,4000",
)


@pytest.fixture
def browser():
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.fail("Debian's chromium and chromium-driver are needed: run `make browser` (as root)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_docs_page_shows_every_operation(browser, adapter_url, client):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    doc = client.get("/openapi.json").json
    expected = {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    browser.get(f"{adapter_url}/docs")
    WebDriverWait(browser, 60).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= len(expected))
    shown = set()
    for block in browser.find_elements(By.CSS_SELECTOR, ".opblock"):
        method = block.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text.strip()
        path = block.find_element(By.CSS_SELECTOR, ".opblock-summary-path").get_attribute("data-path")
        shown.add((method, path))
    assert shown == expected
    page = browser.find_element(By.TAG_NAME, "body").text
    assert "kfadapter" in page and "Failed to load API definition" not in page
    for tag in doc["tags"]:
        assert browser.find_elements(By.CSS_SELECTOR, f'[data-tag="{tag["name"]}"]'), tag["name"]
    # Everything the page loaded came from the adapter itself.
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(url.startswith(adapter_url) for url in loaded), loaded


def test_an_operation_opens_with_its_example(browser, adapter_url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{adapter_url}/docs#/training%20jobs")
    summary = WebDriverWait(browser, 60).until(
        lambda d: d.find_element(
            By.CSS_SELECTOR, '.opblock-summary-path[data-path="/trainingjobs/{trainingjob_id}/execution"]'
        )
    )
    summary.click()
    WebDriverWait(browser, 30).until(lambda d: "scheduled" in d.find_element(By.TAG_NAME, "body").text)
    assert '"run_status": "scheduled"' in browser.find_element(By.TAG_NAME, "body").text
