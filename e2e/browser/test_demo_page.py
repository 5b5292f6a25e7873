#!/usr/bin/env python3
"""Browser end-to-end test of the lwsws demo site, in headless Chromium through WebDriver.

Needs a running lwsws serving the demo config (conf/ in the repository), the system
/usr/bin/chromium and /usr/bin/chromedriver, and the `selenium` package. No driver is ever
downloaded.

Environment:
  LWSWS_URL     base URL of the demo site (default http://127.0.0.1:7681/)
  ARTEFACT_DIR  where screenshots go (default /tmp/lwsws-artefacts)

Exit status 0 when every check passes; otherwise 1, with the failed check on stderr (and a
screenshot failure.png in ARTEFACT_DIR when the browser got that far).
"""

import os
import sys
import time
import uuid
from urllib.parse import urljoin

# Never let Selenium Manager look for (or fetch) browsers or drivers.
os.environ.setdefault("SE_OFFLINE", "true")

try:
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException, WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError as e:  # pragma: no cover - environment problem
    print(f"FAIL: selenium is not installed ({e}); pip install selenium", file=sys.stderr)
    sys.exit(2)

BASE_URL = os.environ.get("LWSWS_URL", "http://127.0.0.1:7681/")
if not BASE_URL.endswith("/"):
    BASE_URL += "/"
ARTEFACT_DIR = os.environ.get("ARTEFACT_DIR", "/tmp/lwsws-artefacts")
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TIMEOUT = 10


class CheckFailed(Exception):
    pass


def log(msg):
    print(f"[e2e] {msg}", flush=True)


def wait_for(driver, what, cond, timeout=TIMEOUT):
    """Polls cond(driver) until it returns something truthy; fails naming `what`."""
    last_error = []

    def probe(d):
        try:
            return cond(d)
        except WebDriverException as e:  # element not there yet, stale, ...
            last_error[:] = [e]
            return False

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(probe)
    except TimeoutException:
        extra = f" (last error: {last_error[0].msg})" if last_error else ""
        raise CheckFailed(f"timed out after {timeout}s waiting for {what}{extra}") from None


def text_of(driver, css):
    return driver.find_element(By.CSS_SELECTOR, css).text.strip()


def int_or_none(s):
    try:
        return int(s)
    except (TypeError, ValueError):
        return None


def make_driver():
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            raise CheckFailed(f"{path} is missing; apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,2300",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER)
    return webdriver.Chrome(service=service, options=options)


def check_js_errors(driver, page):
    """Fails on uncaught exceptions in the page's scripts."""
    try:
        entries = driver.get_log("browser")
    except WebDriverException:
        return
    errors = [e["message"] for e in entries if e.get("level") == "SEVERE" and "Uncaught" in e.get("message", "")]
    if errors:
        raise CheckFailed(f"JavaScript errors on {page}: " + " | ".join(errors))


def check_counter(driver):
    counter = wait_for(
        driver,
        "#counter to show a number",
        lambda d: int_or_none(text_of(d, "#counter")) is not None and text_of(d, "#counter"),
    )
    first = int(counter)
    time.sleep(1.0)
    second = int_or_none(text_of(driver, "#counter"))
    if second is None or second <= first:
        raise CheckFailed(f"#counter did not rise: read {first}, then {second!r} about 1 s later")
    status = text_of(driver, "#di-status")
    if status != "connected":
        raise CheckFailed(f"#di-status is {status!r}, expected 'connected'")
    log(f"counter rises: {first} -> {second}")

    # Let it climb a bit so that a reset is unmistakable.
    wait_for(driver, "#counter to reach 15", lambda d: (int_or_none(text_of(d, "#counter")) or 0) >= 15)
    wait_for(driver, "#reset to be enabled", lambda d: d.find_element(By.ID, "reset").is_enabled())
    before = int(text_of(driver, "#counter"))
    driver.find_element(By.ID, "reset").click()
    after = wait_for(
        driver,
        f"#counter to drop below {before} after Reset",
        lambda d: (lambda v: v is not None and v < before and str(v))(int_or_none(text_of(d, "#counter"))),
    )
    log(f"reset: {before} -> {after}")


def check_close_test(driver):
    driver.find_element(By.ID, "close-test").click()
    result = wait_for(
        driver,
        "#close-result to report the close",
        lambda d: "closed" in text_of(d, "#close-result") and text_of(d, "#close-result"),
    )
    if "1001" not in result or "seeya" not in result:
        raise CheckFailed(f"close test: expected code 1001 reason 'seeya', page shows {result!r}")
    if text_of(driver, "#di-status") != "connected":
        raise CheckFailed("the close test closed the main dumb-increment socket too")
    log(f"close test: {result}")


def check_status(driver):
    count = wait_for(
        driver,
        "#status-count to be at least 1",
        lambda d: (int_or_none(text_of(d, "#status-count")) or 0) >= 1 and text_of(d, "#status-count"),
    )

    def chrome_row(d):
        for row in d.find_elements(By.CSS_SELECTOR, "#status-table tbody tr"):
            cells = row.find_elements(By.TAG_NAME, "td")
            if len(cells) == 3 and ("Chrome" in cells[2].text or "HeadlessChrome" in cells[2].text):
                return [c.text for c in cells]
        return None

    row = wait_for(driver, "a #status-table row whose user agent contains Chrome", chrome_row)
    if not row[0] or not row[1]:
        raise CheckFailed(f"status row lacks peer or time: {row!r}")
    log(f"lws-status: {count} connection(s); row peer={row[0]!r} since={row[1]!r}")


def painted_pixels(driver):
    return driver.execute_script(
        """
        const c = document.getElementById('mirror-canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) n++;
        return n;
        """
    )


def check_mirror(driver):
    wait_for(driver, "#mirror-status to be connected", lambda d: text_of(d, "#mirror-status") == "connected")
    canvas = driver.find_element(By.ID, "mirror-canvas")
    size = (canvas.get_attribute("width"), canvas.get_attribute("height"))
    if size != ("500", "300"):
        raise CheckFailed(f"#mirror-canvas is {size[0]}x{size[1]}, expected 500x300")
    received0 = int_or_none(canvas.get_attribute("data-received")) or 0
    pixels0 = painted_pixels(driver)

    # One stroke, left to right across the middle (offsets are from the element's centre).
    chain = ActionChains(driver).move_to_element_with_offset(canvas, -150, -40).click_and_hold()
    for _ in range(6):
        chain.move_by_offset(50, 12)
    chain.release().perform()

    received = wait_for(
        driver,
        "the echoed stroke (canvas data-received to grow)",
        lambda d: (lambda v: v > received0 and v)(
            int_or_none(d.find_element(By.ID, "mirror-canvas").get_attribute("data-received")) or 0
        ),
    )
    pixels = wait_for(
        driver, "the echoed stroke to be drawn on the canvas", lambda d: (lambda n: n > pixels0 and n)(painted_pixels(d))
    )
    log(f"mirror: {received} message(s) echoed back, {pixels} pixels painted")


def check_form(driver):
    token = f"lwsws e2e {uuid.uuid4().hex[:12]}"
    field = driver.find_element(By.CSS_SELECTOR, "#form-urlencoded input[name=text]")
    field.clear()
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#form-urlencoded button[name=send]").click()
    frame = driver.find_element(By.CSS_SELECTOR, "iframe[name=form-results]")
    driver.switch_to.frame(frame)
    try:
        body = wait_for(
            driver,
            "the form result to show the text sent",
            lambda d: (lambda t: token in t and t)(d.find_element(By.TAG_NAME, "body").text),
        )
        rows = [
            [c.text for c in r.find_elements(By.TAG_NAME, "td")] for r in driver.find_elements(By.CSS_SELECTOR, "tr")
        ]
    finally:
        driver.switch_to.default_content()
    if ["text", str(len(token)), token] not in rows:
        raise CheckFailed(f"form result has no row text/{len(token)}/{token!r}: {body!r}")
    if not any(r and r[0] == "send" for r in rows):
        raise CheckFailed(f"form result has no 'send' row: {body!r}")
    log("form: /formtest echoed the urlencoded fields")


def check_server_status(driver):
    driver.get(urljoin(BASE_URL, "server-status/"))
    wait_for(driver, "#ss-status to be connected", lambda d: text_of(d, "#ss-status") == "connected")
    uptime = wait_for(driver, "#ss-uptime to be non-empty", lambda d: text_of(d, "#ss-uptime"))
    version = text_of(driver, "#ss-version")
    if not version or version == "–":
        raise CheckFailed("#ss-version is empty")
    wait_for(
        driver,
        "the vhost table to list a vhost",
        lambda d: d.find_elements(By.CSS_SELECTOR, "#ss-vhosts tbody tr:not(.empty)"),
    )
    check_js_errors(driver, "/server-status/")
    log(f"server-status: version {version}, uptime {uptime!r}")


def main():
    os.makedirs(ARTEFACT_DIR, exist_ok=True)
    log(f"base URL {BASE_URL}, artefacts in {ARTEFACT_DIR}")
    driver = None
    try:
        driver = make_driver()
        driver.set_page_load_timeout(20)
        driver.get(BASE_URL)
        title = driver.title
        if "lwsws" not in title:
            raise CheckFailed(f"page title is {title!r}, expected the lwsws test page")
        check_counter(driver)
        check_close_test(driver)
        check_status(driver)
        check_mirror(driver)
        check_form(driver)
        check_js_errors(driver, "/")
        driver.execute_script("window.scrollTo(0, 0)")
        shot = os.path.join(ARTEFACT_DIR, "test-page.png")
        driver.save_screenshot(shot)
        log(f"screenshot {shot}")
        check_server_status(driver)
        shot = os.path.join(ARTEFACT_DIR, "server-status.png")
        driver.save_screenshot(shot)
        log(f"screenshot {shot}")
    except (CheckFailed, WebDriverException) as e:
        msg = e.msg if isinstance(e, WebDriverException) else str(e)
        print(f"FAIL: {msg}", file=sys.stderr, flush=True)
        if driver is not None:
            try:
                driver.switch_to.default_content()
                driver.save_screenshot(os.path.join(ARTEFACT_DIR, "failure.png"))
                print(f"(screenshot {os.path.join(ARTEFACT_DIR, 'failure.png')})", file=sys.stderr)
            except WebDriverException:
                pass
        return 1
    finally:
        if driver is not None:
            driver.quit()
    log("PASS: demo page and server-status page work in Chromium")
    return 0


if __name__ == "__main__":
    sys.exit(main())
