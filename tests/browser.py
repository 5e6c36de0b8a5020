"""Debian's chromium, headless, driven through chromedriver by selenium: the console's tests and
docs/screenshots.py use the same browser."""
from __future__ import annotations

import shutil

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = "chromium"            # looked up on PATH: Debian's packages put both in /usr/bin
CHROMEDRIVER = "chromedriver"


def installed() -> bool:
    return bool(shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER))


def _path(program: str) -> str:
    found = shutil.which(program)
    assert found, f"{program} is not installed (.ci/system-deps installs it)"
    return found


def chrome(width: int = 1280, height: int = 900) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = _path(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-extensions", f"--window-size={width},{height}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(_path(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(15)
    return driver
