"""Screenshots of the page of `mrmkg serve` for the README: a checkpoint served on a free loopback port,
headless Chromium (Debian's `chromium` + `chromium-driver`, through Selenium, as in
tests/test_serve_browser.py), a picture uploaded, a question asked, the answer and its subgraph drawn.

    .venv/bin/python research/serve_screenshot.py CHECKPOINT PICTURE "QUESTION" [--out docs] [--expect NAME]

Writes OUT/serve-desktop.png (1280 x 800) and OUT/serve-phone.png (390 x 844); with ``--expect``, exits 1
unless the page shows that answer.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests"), str(ROOT / "benchmarks")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("picture")
    ap.add_argument("question")
    ap.add_argument("--out", default=str(ROOT / "docs"))
    ap.add_argument("--expect", default=None, help="the answer the page must show")
    args = ap.parse_args()

    import time

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    from serve import Server
    from test_serve_browser import browser

    srv = Server(args.checkpoint, max_batch=8, max_wait_ms=15)  # `mrmkg serve` on a free loopback port
    url = srv.url
    shown = []
    try:
        srv.wait_ready()
        for name, (w, h) in {"desktop": (1280, 800), "phone": (390, 844)}.items():
            d = browser(w, h)
            try:
                d.get(url + "/")
                WebDriverWait(d, 60).until(
                    lambda d: "checkpoint" in d.find_element(By.ID, "info").get_attribute("textContent"))
                d.find_element(By.ID, "question").send_keys(args.question)
                d.find_element(By.ID, "image-input").send_keys(str(Path(args.picture).absolute()))
                WebDriverWait(d, 10).until(lambda d: d.find_element(By.ID, "preview").get_attribute("src"))
                d.find_element(By.ID, "ask").click()
                WebDriverWait(d, 120).until(lambda d: d.find_element(By.ID, "answer").get_attribute("textContent")
                                            or d.find_element(By.ID, "error").get_attribute("textContent"))
                time.sleep(1.0)  # thumbnails load
                answer = d.find_element(By.ID, "answer").get_attribute("textContent")
                shown.append(answer)
                out = Path(args.out) / f"serve-{name}.png"
                d.save_screenshot(str(out))
                print(f"{out}: answer {answer!r}")
            finally:
                d.quit()
    finally:
        srv.stop()
    if args.expect and any(a != args.expect for a in shown):
        sys.exit(f"expected the answer {args.expect!r}, the page showed {shown}")


if __name__ == "__main__":
    main()
