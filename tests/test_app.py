"""app.py: the JSON API through an HTTP client, and the page in a real headless Chromium."""

import io
import json
import os
import shutil
import subprocess
import sys

import pytest
import requests
from PIL import Image

import checkpoint
import data
import prepare
from conftest import REPO, SHARED_GOODIMG, png_claiming, run, script_env

SEVEN = os.path.join(SHARED_GOODIMG, data.GOODIMG_SUBDIR, "Sample008", "img008-00019.png")  # README's example
needs_goodimg = pytest.mark.skipif(not os.path.exists(SEVEN),
                                   reason="the real GoodImg set is not at ../shared/chars74k")
needs_shipped = pytest.mark.skipif(not checkpoint.shipped_models(), reason="no model is shipped in saved/model/")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """python app.py --port 0 in an empty project folder: the shipped model, on 127.0.0.1."""
    home = tmp_path_factory.mktemp("app")
    process = subprocess.Popen([sys.executable, os.path.join(REPO, "app.py"), "--port", "0"], cwd=home,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=script_env(home))
    line = process.stdout.readline()
    assert line.startswith("Serving on http://127.0.0.1:"), line + process.stderr.read()
    yield line.split()[2]
    process.terminate()
    process.wait(timeout=30)


def png_bytes(character, seed=0):
    import random

    image = prepare.render_character(character, prepare.font_files()[0], random.Random(seed))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@needs_shipped
def test_health_names_the_model_and_its_runtime(server):
    health = requests.get(f"{server}/api/health", timeout=30).json()
    assert health["status"] == "ok" and health["classes"] == 62 and health["image_size"] == 64
    assert health["model"].endswith(".h5") and health["runtime"] == "LiteRT"


@needs_shipped
def test_several_images_multipart_or_one_as_the_body_answer_as_test_py_does(server, tmp_path):
    images = {"A.png": png_bytes("A"), "x.png": png_bytes("x", 1)}
    files = [("image", (name, content, "image/png")) for name, content in images.items()]
    response = requests.post(f"{server}/api/predict?top=3", files=files, timeout=60)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["name"] for r in results] == list(images) and all(len(r["top"]) == 3 for r in results)
    assert all(r["top"][0]["probability"] >= r["top"][1]["probability"] for r in results)

    for name, content in images.items():
        (tmp_path / name).write_bytes(content)
    printed = run("test.py", "-img", *[tmp_path / name for name in images], "--json", "--top", "3", cwd=tmp_path)
    from_test_py = [classes(p["top"]) for p in json.loads(printed.stdout)["predictions"]]
    assert from_test_py == [classes(r["top"]) for r in results]

    body = requests.post(f"{server}/api/predict", data=images["A.png"], timeout=60)  # top 5 by default
    assert body.status_code == 200 and classes(body.json()["results"][0]["top"])[:3] == classes(results[0]["top"])


def classes(top):
    return [guess["class"] for guess in top]


@needs_shipped
@pytest.mark.parametrize("upload, status, message", [
    ({"files": [("image", ("notes.png", b"not an image", "image/png"))]}, 422, "not a readable image"),
    ({"data": png_claiming(60000, 60000)}, 422, "too many pixels"),
    ({"data": b"\0" * (21 * 1024 * 1024)}, 413, "larger than 20 MB"),
    ({"files": [("image", (f"{i}.png", b"x", "image/png")) for i in range(33)]}, 413, "at most 32"),
    ({}, 400, "no image"),
    ({"data": b"x", "params": {"top": "all"}}, 400, "top must be"),
    ({"data": b"x", "params": {"top": "\u00b2"}}, 400, "top must be"),  # a digit to str.isdigit, not to int()
])
def test_bad_uploads_get_a_clear_json_error_and_the_server_keeps_serving(server, upload, status, message):
    response = requests.post(f"{server}/api/predict", timeout=60, **upload)
    assert response.status_code == status and message in response.json()["error"], response.text
    assert requests.get(f"{server}/api/health", timeout=30).status_code == 200


@needs_shipped
def test_one_bad_image_among_good_ones_is_named_and_the_others_predicted(server):
    files = [("image", ("good.png", png_bytes("7"), "image/png")), ("image", ("bad.png", b"", "image/png"))]
    results = requests.post(f"{server}/api/predict", files=files, timeout=60).json()["results"]
    assert "top" in results[0] and "empty file" in results[1]["error"]


@needs_shipped
@needs_goodimg
def test_the_readme_seven_through_the_api(server):
    with open(SEVEN, "rb") as f:
        top = requests.post(f"{server}/api/predict", files={"image": f}, timeout=60).json()["results"][0]["top"]
    assert top[0]["character"] == "7" and top[0]["class"] == "Sample008" and len(top) == 5


def chromium():
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@needs_shipped
@needs_goodimg
@pytest.mark.skipif(not chromium(), reason="no Chromium (Debian: apt-get install chromium)")
def test_the_page_in_headless_chromium(server, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    broken = tmp_path / "broken.png"
    broken.write_bytes(open(SEVEN, "rb").read()[:60])
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=[
            "--no-sandbox", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])  # a test camera
        page = browser.new_page()
        page.goto(server)
        page.wait_for_function("document.querySelector('#model').textContent.includes('LiteRT')")
        page.set_input_files("#files", [SEVEN, str(broken)])
        page.wait_for_selector(".card .top li")
        page.wait_for_selector(".card .error:not([hidden])")
        cards = page.query_selector_all(".card")
        assert cards[0].query_selector(".top li .char").inner_text() == "7"
        assert cards[0].query_selector(".top li .class").inner_text() == "Sample008"
        assert len(cards[0].query_selector_all(".top li")) == 5
        assert "broken.png: not a readable image" in cards[1].query_selector(".error").inner_text()

        photo = tmp_path / "street.png"  # the '7' and an 'A' side by side in a larger photo
        street = Image.new("RGB", (400, 240), (128, 128, 128))
        street.paste(Image.open(SEVEN).convert("RGB").resize((62, 112)), (40, 60))
        street.paste(Image.open(SEVEN.replace("Sample008/img008-00019", "Sample011/img011-00005")).convert("RGB")
                     .resize((80, 140)), (260, 50))
        street.save(photo)
        page.set_input_files("#files", [str(photo)])
        newest_answered = "document.querySelector('.card .top li, .card .error:not([hidden])') !== null && " \
            "document.querySelector('.card').querySelector('.top li') !== null"
        page.wait_for_function(f"document.querySelector('.card .name').textContent === 'street.png' && "
                               f"{newest_answered}")
        page.query_selector_all(".card")[0].query_selector(".crop").click()
        canvas = page.wait_for_selector("#crop-canvas", state="visible").bounding_box()
        scale = canvas["width"] / 400
        page.mouse.move(canvas["x"] + 32 * scale, canvas["y"] + 52 * scale)
        page.mouse.down()
        page.mouse.move(canvas["x"] + 110 * scale, canvas["y"] + 180 * scale, steps=5)
        page.mouse.up()
        page.click("#crop-predict")
        page.wait_for_function(f"document.querySelector('.card .name').textContent === 'crop of street.png' && "
                               f"{newest_answered}")
        assert page.query_selector(".card").query_selector(".top li .char").inner_text() == "7"

        with open(SEVEN, "rb") as f:
            seven = list(f.read())
        for event in ("paste", "drop"):  # the browser's own events, carrying the file as a user's would
            page.evaluate("""([bytes, event]) => {
                const transfer = new DataTransfer();
                transfer.items.add(new File([new Uint8Array(bytes)], `${event}.png`, {type: "image/png"}));
                const target = event === "paste" ? document : document.querySelector("#drop");
                target.dispatchEvent(event === "paste" ? new ClipboardEvent("paste", {clipboardData: transfer})
                                                       : new DragEvent("drop", {dataTransfer: transfer}));
            }""", [seven, event])
            page.wait_for_function(f"document.querySelector('.card .name').textContent === '{event}.png' && "
                                   f"{newest_answered}")
            assert page.query_selector(".card").query_selector(".top li .char").inner_text() == "7"

        page.click("#camera-start")
        page.wait_for_function("document.querySelector('#video').videoWidth > 0")
        page.click("#camera-shoot")  # a frame of the camera opens in the cropper
        page.wait_for_selector("#cropper", state="visible")
        assert page.evaluate("cropCanvas.width") == page.evaluate("crop.image.naturalWidth") > 0
        assert page.is_hidden("#camera")
        browser.close()
