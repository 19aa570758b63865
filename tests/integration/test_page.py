"""The HTML page, used the way a person uses it: in a real (headless) Chromium."""

from __future__ import annotations

import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.support import ARTIFACTS, SystemCopy, free_port, needed, unique_srn

# Debian's chromium, never a browser download; the flags keep it off the network.
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def submit(page: Any, button: str) -> None:
    """Click, and wait for the answer to this click (a new request id), not the last one."""
    before = page.text_content("#request-id")
    page.click(button)
    page.wait_for_function("(before) => document.getElementById('request-id').textContent !== before",
                           arg=before)


def last_cell(page: Any, table: str, key: str, text: str) -> None:
    """Wait until the row of `key` in a table of the page ends with `text`."""
    page.wait_for_function(
        "([table, key, text]) => document.querySelector("
        "`#${table} tr[data-key='${key}'] td:last-child`)?.textContent === text", arg=[table, key, text])


@pytest.fixture(scope="module")
def browser_page(stack: SystemCopy) -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        needed("the browser test needs Chromium (playwright comes with .venv): "
               "apt-get install chromium, or your system's chromium package")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        needed("the browser test needs playwright: python scripts/stack.py test installs it into .venv")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1100, "height": 760})
        page.goto(stack.base_url + "/")
        page.wait_for_selector("#records-count:not(:empty)")
        yield page
        browser.close()


def test_insert_shows_the_row_then_delete_removes_it(browser_page: Any) -> None:
    page, srn = browser_page, unique_srn("H")
    page.fill("#insert-name", "Page Person")
    page.fill("#insert-srn", srn.lower())
    page.fill("#insert-section", "C")
    submit(page, "#insert-button")
    page.wait_for_selector(f"#records tr[data-key='{srn}']")
    assert page.text_content("#outcome-title") == f"Inserted {srn} (Page Person)."
    assert page.get_attribute("#outcome", "class") == "ok"
    assert page.text_content("#request-id") not in ("", "-")
    cells = page.locator(f"#records tr[data-key='{srn}'] td").all_text_contents()
    assert cells == [srn, "Page Person", "C"]
    page.screenshot(path=str(ARTIFACTS / "page.png"), full_page=True)

    page.fill("#delete-srn", srn)
    submit(page, "#delete-button")
    page.wait_for_selector(f"#records tr[data-key='{srn}']", state="detached")
    assert page.text_content("#outcome-title") == f"Deleted {srn} (Page Person)."


def test_a_bad_record_is_explained_in_words(browser_page: Any) -> None:
    page = browser_page
    page.fill("#insert-name", "")
    page.fill("#insert-srn", "not valid!")
    page.fill("#insert-section", "A")
    submit(page, "#insert-button")
    assert page.text_content("#outcome-title") == "The record is not valid. (HTTP 400)"
    details = page.locator("#outcome-details li").all_text_contents()
    assert details == ["Name: must not be empty", "SRN: must be letters, digits, '-' or '_'"]
    request_id = page.text_content("#request-id")
    assert request_id and request_id != "-"
    page.screenshot(path=str(ARTIFACTS / "page-error.png"), full_page=True)


def test_deleting_what_is_not_there_and_the_health_check(browser_page: Any) -> None:
    page = browser_page
    page.fill("#delete-srn", unique_srn("NONE"))
    submit(page, "#delete-button")
    assert page.text_content("#outcome-title") == "Nothing with this SRN or SKU exists. (HTTP 404)"
    page.fill("#health-message", "ping from the page")
    submit(page, "#health-button")
    assert page.text_content("#outcome-title") == "consumer_one answered: ping from the page"


def test_update_changes_the_row_in_place(browser_page: Any) -> None:
    page, srn = browser_page, unique_srn("H")
    page.fill("#insert-name", "Before")
    page.fill("#insert-srn", srn)
    page.fill("#insert-section", "A")
    submit(page, "#insert-button")
    page.fill("#update-srn", srn.lower())
    page.fill("#update-section", "B")  # the name is left blank: kept
    submit(page, "#update-button")
    assert page.text_content("#outcome-title") == f"Updated {srn}: Before, section B."
    last_cell(page, "records", srn, "B")


def test_an_item_its_stock_and_an_order(browser_page: Any) -> None:
    page, sku = browser_page, unique_srn("P")
    page.fill("#item-sku", sku)
    page.fill("#item-name", "Page pen")
    page.fill("#item-quantity", "2")
    submit(page, "#item-button")
    assert page.text_content("#outcome-title") == f"Created {sku} (Page pen) with 2 in stock."
    page.wait_for_selector(f"#items tr[data-key='{sku}']")

    page.fill("#stock-sku", sku)
    page.fill("#stock-delta", "3")
    submit(page, "#stock-button")
    assert page.text_content("#outcome-title") == f"{sku} now has 5 in stock."

    page.fill("#order-sku", sku)
    page.fill("#order-quantity", "4")
    submit(page, "#order-button")
    title = page.text_content("#outcome-title") or ""
    assert title.startswith("Order ") and title.endswith(f" placed: 4 of {sku}."), title
    last_cell(page, "items", sku, "1")
    order_id = title.split()[1]
    last_cell(page, "orders", order_id, "placed")  # both tables refresh side by side: wait for this one too
    assert page.locator(f"#orders tr[data-key='{order_id}'] td").all_text_contents() == [
        order_id, sku, "4", "placed"]

    page.fill("#order-sku", sku)
    page.fill("#order-quantity", "2")
    submit(page, "#order-button")
    assert page.text_content("#outcome-title") == "There is not enough in stock. (HTTP 409)"
    page.screenshot(path=str(ARTIFACTS / "page-inventory.png"), full_page=True)


def test_api_reference_lists_every_operation(browser_page: Any, stack: SystemCopy) -> None:
    import requests

    page = browser_page
    page.goto(stack.base_url + "/docs")
    page.wait_for_selector("section.operation")
    document = requests.get(stack.base_url + "/openapi.json", timeout=10).json()
    expected = {(path, method) for path, item in document["paths"].items() for method in item}
    shown = {(s.get_attribute("data-path"), s.get_attribute("data-method"))
             for s in page.locator("section.operation").all()}
    assert shown == expected
    insert = page.locator("section.operation[data-path='/insert_record']")
    statuses = insert.locator("tr[data-status]").evaluate_all("rows => rows.map(r => r.dataset.status)")
    assert sorted(statuses) == sorted(document["paths"]["/insert_record"]["post"]["responses"])
    assert "SRN" in insert.text_content()
    page.screenshot(path=str(ARTIFACTS / "docs.png"), full_page=True)
    page.goto(stack.base_url + "/")


@pytest.fixture
def another_site() -> Iterator[tuple[str, dict[str, bytes]]]:
    """A web page on another site: http://localhost:<port>/ while the API is at 127.0.0.1
    (another host name is another site). Serves whatever `pages` holds."""
    pages: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path, b"")
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None: ...

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://localhost:{server.server_address[1]}", pages
    finally:
        server.shutdown()


def test_a_page_on_another_site_can_neither_delete_nor_insert(
        browser_page: Any, stack: SystemCopy, another_site: tuple[str, dict[str, bytes]]) -> None:
    """What the browser really sends for another site's <img> and auto-submitted form (Fetch
    Metadata, Origin) is refused: the victim's record stays, the forged one is never written."""
    site, pages = another_site
    victim, forged = unique_srn("V"), unique_srn("F")
    inserted = requests.post(f"{stack.base_url}/insert_record", timeout=15,
                             json={"Name": "Victim", "SRN": victim, "Section": "A"})
    assert inserted.status_code == 201
    api = stack.base_url  # http://127.0.0.1:<port>
    pages["/"] = f"""<!doctype html><title>elsewhere</title>
<img id="img" src="{api}/delete_record?SRN={victim}"
     onerror="document.title='img done'" onload="document.title='img done'">
<form id="form" method="post" action="{api}/insert_record">
  <input name="Name" value="Forged"><input name="SRN" value="{forged}"><input name="Section" value="A">
</form>""".encode()
    context = browser_page.context.browser.new_context()
    page = context.new_page()
    try:
        page.goto(site + "/")
        page.wait_for_function("document.title === 'img done'")
        with page.expect_navigation():
            page.evaluate("document.getElementById('form').submit()")
        answer = page.text_content("body") or ""
        assert "cross_site_request" in answer, answer
    finally:
        context.close()
    stored = stack.sql(f"SELECT srn FROM students WHERE srn IN ('{victim}', '{forged}')")
    assert [row[0] for row in stored] == [victim]
