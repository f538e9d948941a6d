"""Downloading EnglishImg.tgz from a local HTTP server: good, broken, hostile and dropped archives."""

import http.server
import io
import os
import socket
import tarfile
import threading

import numpy as np
import pytest
from PIL import Image

import data
import prepare
from conftest import assert_user_error, run


def png_bytes():
    buffer = io.BytesIO()
    Image.fromarray(np.full((12, 8, 3), 200, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def tgz(entries):
    """A tar.gz from (name, bytes | ('symlink', target)) pairs."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in entries:
            info = tarfile.TarInfo(name)
            if isinstance(content, tuple):
                info.type, info.linkname = tarfile.SYMTYPE, content[1]
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def official_entries():
    image = png_bytes()
    return [(f"English/Img/GoodImg/Bmp/{name}/img{i + 1:03d}-00001.png", image)
            for i, name in enumerate(data.CLASS_NAMES)] + [("English/Img/BadImag/Bmp/Sample001/x.png", image)]


class Server:
    """Serves archives from memory on 127.0.0.1; paths under /drop/ send half the promised bytes."""

    def __init__(self, files):
        files = dict(files)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                body = files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if self.path.startswith("/drop/") else body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return f"http://127.0.0.1:{self.httpd.server_port}/{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def server():
    good = tgz(official_entries())
    served = Server({
        "EnglishImg.tgz": good,
        "broken.tgz": good[: len(good) // 2],
        "escape.tgz": tgz(official_entries() + [("../evil.txt", b"x")]),
        "absolute.tgz": tgz(official_entries() + [("/tmp/chars74k-absolute-evil.txt", b"x")]),
        "link.tgz": tgz(official_entries() + [("English/passwd", ("symlink", "/etc/passwd"))]),
        "nofolders.tgz": tgz([("Other/readme.txt", b"nothing here")]),
    })
    yield served
    served.close()


def download(server, path, tmp_path):
    return prepare.download_dataset(server.url(path), dest=str(tmp_path / "project"),
                                    download_dir=str(tmp_path / "cache" / "downloads"))


def test_good_archive_is_downloaded_extracted_checked_and_cached(server, tmp_path):
    root = download(server, "EnglishImg.tgz", tmp_path)
    assert root == os.path.join(str(tmp_path / "project"), "English", data.GOODIMG_SUBDIR)
    assert len(data.list_images(root)) == 62
    assert os.path.exists(tmp_path / "cache" / "downloads" / "EnglishImg.tgz")
    assert [p for p in os.listdir(tmp_path / "project") if p != "English"] == []  # no staging left
    again = prepare.download_dataset(server.url("missing-now.tgz"), dest=str(tmp_path / "second"),
                                     download_dir=str(tmp_path / "cache" / "downloads"))
    assert len(data.list_images(again)) == 62  # served from the cache, not the (404) URL


def assert_nothing_left(tmp_path):
    assert not os.path.exists(tmp_path / "project" / "English")
    assert os.listdir(tmp_path / "project") == []
    assert os.listdir(tmp_path / "cache" / "downloads") == []  # the bad archive will be downloaded again


def test_broken_archive_is_a_clear_error_and_not_kept(server, tmp_path):
    with pytest.raises(data.DatasetError, match="not a complete tar.gz"):
        download(server, "broken.tgz", tmp_path)
    assert_nothing_left(tmp_path)


@pytest.mark.parametrize("archive, reason", [("escape.tgz", "outside"), ("absolute.tgz", "outside"),
                                             ("link.tgz", "link")])
def test_hostile_entries_are_refused_and_nothing_is_written_outside(server, tmp_path, archive, reason):
    with pytest.raises(data.DatasetError, match=reason):
        download(server, archive, tmp_path)
    assert_nothing_left(tmp_path)
    assert not os.path.exists(tmp_path / "evil.txt")
    assert not os.path.exists("/tmp/chars74k-absolute-evil.txt")


def test_archive_without_the_class_folders_is_refused(server, tmp_path):
    with pytest.raises(data.DatasetError, match="does not hold"):
        download(server, "nofolders.tgz", tmp_path)
    assert_nothing_left(tmp_path)


def test_dropped_connection_leaves_no_partial_archive(server, tmp_path):
    with pytest.raises(data.DatasetError, match="could not download"):
        download(server, "drop/EnglishImg.tgz", tmp_path)
    assert not os.path.exists(tmp_path / "project" / "English")
    assert os.listdir(tmp_path / "cache" / "downloads") == []
    assert len(data.list_images(download(server, "EnglishImg.tgz", tmp_path))) == 62  # the next run works


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_train_without_network_says_what_to_do(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/EnglishImg.tgz"
    result = run("train.py", "--data-url", url, "--weights", "none", "--epochs", "1", cwd=tmp_path)
    assert_user_error(result, url)
    message = result.stderr
    assert "--data-dir" in message and "--data synthetic" in message and "English" in message
    assert not os.path.exists(tmp_path / "English")
