"""The real server in a subprocess, driven by headless Debian Chromium through Selenium.

Needs ``pip install selenium`` and Debian's ``chromium`` + ``chromium-driver``; skipped otherwise.
Selenium Manager is bypassed (the driver path is given), so nothing is downloaded.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from PIL import ImageColor

from conftest import serving
from lesionlite.edge.classifier import Classifier
from lesionlite.edge.labels import DECISION_COLOURS as COLOURS, DISCLAIMER

webdriver = pytest.importorskip("selenium.webdriver", reason="needs the selenium package (pip install selenium)")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="needs Debian's chromium and chromium-driver (apt-get install chromium "
                                       "chromium-driver)")

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = sorted((ROOT / "samples/lesions").glob("*.jpg"))[0]
DECISION_COLOURS = {d: "rgba({}, {}, {}, 1)".format(*ImageColor.getrgb(c)) for d, c in COLOURS.items()}
"""As the browser reports each decision's banner colour (the overlay draws with the same table)."""
START_TIMEOUT = 60


@pytest.fixture(scope="module")
def server_url():
    """``lesionlite serve --port 0`` (default bundle) in a subprocess; its URL once it listens."""
    with serving(timeout=START_TIMEOUT) as url:
        yield url


def chromium(profile: Path, javascript: bool = True) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--window-size=430,1300", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    if not javascript:
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    return driver


@pytest.fixture(scope="module")
def expected() -> dict:
    return Classifier().classify(SAMPLE).to_dict()


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_upload_shows_the_answer(server_url: str, expected: dict, javascript: bool, tmp_path: Path) -> None:
    driver = chromium(tmp_path / "profile", javascript)
    try:
        driver.get(server_url)
        assert driver.find_element(By.ID, "disclaimer").text == DISCLAIMER
        driver.find_element(By.ID, "image").send_keys(str(SAMPLE))
        if not javascript:  # with JavaScript, choosing the photo submits the form
            driver.find_element(By.ID, "submit").click()
        WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.ID, "result")))
        decision = driver.find_element(By.ID, "decision")
        assert decision.text == expected["decision"].capitalize()
        banner = decision.find_element(By.XPATH, "..")
        if expected["decision"] in DECISION_COLOURS:
            assert banner.value_of_css_property("background-color") == DECISION_COLOURS[expected["decision"]]
        assert driver.find_element(By.ID, "reason").text == expected["reason"]
        names = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#top .name")]
        assert names == [t["name"] for t in expected["top"]]
        assert driver.find_element(By.ID, "disclaimer").text == DISCLAIMER
        assert driver.find_element(By.CSS_SELECTOR, "img.photo").get_attribute("src").startswith("data:image/jpeg")
        assert driver.find_element(By.ID, "model-name").text
        shot = tmp_path / f"result-{'js' if javascript else 'no-js'}.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 0
        print(f"screenshot: {shot}", file=sys.stderr)
        if os.environ.get("LESIONLITE_SCREENSHOT_DIR"):
            shutil.copy(shot, os.environ["LESIONLITE_SCREENSHOT_DIR"])
    finally:
        driver.quit()


def test_non_image_shows_the_reason(server_url: str, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a photo\n")
    driver = chromium(tmp_path / "profile")
    try:
        driver.get(server_url)
        driver.find_element(By.ID, "image").send_keys(str(text))
        error = WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.ID, "error")))
        assert "not an image" in error.text
        assert driver.find_element(By.ID, "disclaimer").text == DISCLAIMER
    finally:
        driver.quit()


def test_a_photo_that_is_not_dermoscopy_is_declined_in_words(server_url: str, tmp_path: Path) -> None:
    """The parrot gets no label and no red "Refer": the page says what the model reads, in the gate's
    own colour, and asks for a dermatoscope photo without opening the bare phone camera."""
    driver = chromium(tmp_path / "profile")
    try:
        driver.get(server_url)
        field = driver.find_element(By.ID, "image")
        assert field.get_attribute("capture") is None
        assert "dermatoscope" in driver.find_element(By.CSS_SELECTOR, "label[for=image]").text
        field.send_keys(str(ROOT / "samples/non-lesion/parrot.jpg"))
        decision = WebDriverWait(driver, 60).until(ec.presence_of_element_located((By.ID, "decision")))
        assert decision.text == "Not a dermoscopic image"
        banner = decision.find_element(By.XPATH, "..")
        assert banner.value_of_css_property("background-color") == DECISION_COLOURS["out-of-scope"]
        assert "dermatoscope images only" in banner.text
        assert driver.find_element(By.ID, "reason").text.startswith("not a dermoscopic image of a skin lesion")
        assert not driver.find_elements(By.CSS_SELECTOR, "#top")
        assert driver.find_element(By.ID, "disclaimer").text == DISCLAIMER
        shot = tmp_path / "out-of-scope.png"
        assert driver.save_screenshot(str(shot))
        if os.environ.get("LESIONLITE_SCREENSHOT_DIR"):
            shutil.copy(shot, os.environ["LESIONLITE_SCREENSHOT_DIR"])
    finally:
        driver.quit()
