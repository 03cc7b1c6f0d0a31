"""The page at / in a real browser: `mrmkg serve` in a subprocess on a free loopback port with a small
demo checkpoint, headless Chromium (the Debian package, driven by Selenium through the system
chromedriver: nothing is downloaded), a demo picture uploaded and a question asked; the answer is
shown and the subgraph's nodes are drawn in the SVG. A screenshot is saved in the test's folder."""
from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.weights("minilm", "efficientnet-lite0")

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
DRIVER = shutil.which("chromedriver")
ROOT = Path(__file__).resolve().parents[1]


def _skip_reason() -> str | None:
    if CHROMIUM is None or DRIVER is None:
        return "headless Chromium not installed (apt-get install -y chromium chromium-driver; .ci/run does it)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium not installed (pip install -r requirements-dev.txt)"
    return None


pytestmark = [pytestmark, pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, json.loads(r.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from serve_fixture import build_checkpoint

    world = build_checkpoint(tmp_path_factory.mktemp("serve_browser"))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    log = open(tmp_path_factory.mktemp("log") / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "mrmkg", "serve", str(world["run"]), "--host", "127.0.0.1",
                             "--port", str(port), "--quiet"], stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):  # up to 2 minutes for the model to load
            if proc.poll() is not None:
                pytest.fail(f"mrmkg serve exited with {proc.returncode}: {Path(log.name).read_text()[-2000:]}")
            try:
                if get_json(url + "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("mrmkg serve did not become ready in 2 minutes")
        yield url, world
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
        log.close()


def browser(width: int, height: int):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--hide-scrollbars",
              "--no-first-run", "--disable-extensions"):
        opts.add_argument(a)
    opts.binary_location = CHROMIUM
    d = webdriver.Chrome(service=Service(DRIVER), options=opts)
    d.set_page_load_timeout(60)
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})
    return d


@pytest.mark.parametrize("width,height", [(1280, 800), (390, 844)], ids=["desktop", "phone"])
def test_page_answers_an_uploaded_picture_and_draws_the_subgraph(server, tmp_path, width, height):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, world = server
    status, expected = 0, None
    req = urllib.request.Request(url + "/v1/retrieve", method="POST", headers={"content-type": "application/json"},
                                 data=json.dumps({"question": world["question"], "image": base64.b64encode(
                                     world["image"].read_bytes()).decode()}).encode())
    with urllib.request.urlopen(req, timeout=30) as r:
        status, expected = r.status, json.loads(r.read())
    assert status == 200
    d = browser(width, height)
    try:
        d.get(url + "/")
        WebDriverWait(d, 60).until(lambda d: "checkpoint" in d.find_element(By.ID, "info").get_attribute("textContent"))
        d.find_element(By.ID, "question").send_keys(world["question"])
        d.find_element(By.ID, "image-input").send_keys(str(world["image"]))
        WebDriverWait(d, 10).until(lambda d: d.find_element(By.ID, "preview").get_attribute("src"))
        d.find_element(By.ID, "ask").click()
        WebDriverWait(d, 60).until(lambda d: d.find_element(By.ID, "answer").get_attribute("textContent")
                                   or d.find_element(By.ID, "error").get_attribute("textContent"))
        assert not d.find_element(By.ID, "error").get_attribute("textContent")
        shown = d.find_element(By.ID, "answer").get_attribute("textContent")
        # the same question through the API (what `mrmkg ask` answers) gives the answer the page shows
        req = urllib.request.Request(url + "/v1/answer", method="POST", headers={"content-type": "application/json"},
                                     data=json.dumps({"question": world["question"], "image": base64.b64encode(
                                         world["image"].read_bytes()).decode()}).encode())
        with urllib.request.urlopen(req, timeout=30) as r:
            api = json.loads(r.read())
        assert shown == api["answer"]
        cands = d.find_elements(By.CSS_SELECTOR, "#candidates li")
        assert len(cands) == len(api["candidates"])
        drawn = {n.get_attribute("data-id") for n in d.find_elements(By.CSS_SELECTOR, "#graph-svg g.node")}
        nodes = expected["subgraph"]["nodes"]
        want = {n["id"] if n["kind"] == "entity" else "image:" + n["of"] for n in nodes}
        assert nodes and drawn == want
        thumbs = d.find_elements(By.CSS_SELECTOR, "#graph-svg g.node.image image")
        assert thumbs and all(t.get_attribute("href").startswith("/v1/images/") for t in thumbs)
        rows = d.find_elements(By.CSS_SELECTOR, "#triples tbody tr")
        assert [r.find_element(By.CSS_SELECTOR, "td.id").text for r in rows] == \
               [str(t["id"]) for t in expected["subgraph"]["triples"]]
        shot = tmp_path / f"serve-{width}x{height}.png"
        assert d.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        d.quit()
