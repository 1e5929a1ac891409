#!/usr/bin/env python3
"""Screenshots of the console's pages at 1280 px and 390 px wide, through chromedriver's
W3C WebDriver API (Debian's chromium and chromium-driver), into docs/console/.

Usage: scripts/console-screenshots.py BASE_URL USER PASSWORD
(`refbridge demo --serve` prints all three.)
"""
import base64
import json
import re
import subprocess
import sys
import time
import urllib.request

base, user, password = sys.argv[1], sys.argv[2], sys.argv[3]
out = "docs/console"
port = 9515
driver = subprocess.Popen(["chromedriver", f"--port={port}"], stdout=subprocess.DEVNULL)
time.sleep(1)


def call(method, path, body=None):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req) as res:
        return json.load(res)["value"]


try:
    caps = {"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu"]}}}}
    sid = call("POST", "/session", caps)["sessionId"]
    s = f"/session/{sid}"

    def go(path):
        call("POST", f"{s}/url", {"url": base + path})

    def find(css):
        el = call("POST", f"{s}/element", {"using": "css selector", "value": css})
        return next(iter(el.values()))

    def shot(name):
        for width in (1280, 390):
            call("POST", f"{s}/window/rect", {"width": width, "height": 900})
            height = call("POST", f"{s}/execute/sync", {
                "script": "return document.documentElement.scrollHeight", "args": []})
            call("POST", f"{s}/window/rect", {"width": width, "height": min(height + 120, 6000)})
            png = call("GET", f"{s}/screenshot")
            with open(f"{out}/{name}-{width}.png", "wb") as f:
                f.write(base64.b64decode(png))

    go("/console/login")
    shot("login")
    call("POST", f"{s}/element/{find('#username')}/value", {"text": user})
    call("POST", f"{s}/element/{find('#password')}/value", {"text": password})
    call("POST", f"{s}/element/{find('button[type=submit]')}/click", {})
    time.sleep(0.5)
    shot("inbox")
    source = call("GET", f"{s}/source")
    paths = sorted(set(re.findall(r'href="(/console/referrals/[0-9a-f-]+)"', source)))
    for i, path in enumerate(paths):
        go(path)
        time.sleep(0.3)
        shot(f"referral-{i + 1}")
    for name, path in (("attention", "/console/attention"), ("ops", "/console/ops"),
                       ("payors", "/console/payors"), ("webhooks", "/console/webhooks")):
        go(path)
        time.sleep(0.3)
        shot(name)
    go(paths[0])
    patient = re.findall(r'href="(/console/patients/[0-9a-f-]+)"', call("GET", f"{s}/source"))
    if patient:
        go(patient[0])
        time.sleep(0.3)
        shot("patient")
    call("DELETE", s)
finally:
    driver.terminate()
