"""`pretrained: True`: MindCV's published InceptionV4 weights, downloaded once into a cache, verified against the
sha256 prefix in MindCV's file name, and loaded as MindCV's load_pretrained loads them. A local HTTP server serves
checkpoints the tests make: nothing is downloaded from outside."""
from __future__ import annotations

import hashlib
import http.server
import os
import socket
import threading
import time

import numpy as np
import pytest

from incv4.trainer.model import pretrained
from incv4.trainer.recipe import RecipeError


class _Server:
    """Serves `files` (name -> bytes) on 127.0.0.1 and counts the requests."""

    def __init__(self, files: dict):
        self.files, self.requests = files, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                name = self.path.rsplit("/", 1)[-1]
                outer.requests.append(name)
                body = outer.files.get(name)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/toolkits/mindcv/inception_v4/{name}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(files):
        servers.append(_Server(files))
        return servers[-1]
    yield start
    for server in servers:
        server.close()


def _hashed_name(body: bytes, model="inception_v4") -> str:
    return f"{model}-{hashlib.sha256(body).hexdigest()[:8]}.ckpt"


def _publish(serve, body: bytes):
    """A server with `body` under its MindCV-style hashed name: (the server, the name)."""
    name = _hashed_name(body)
    return serve({name: body}), name


def _publish_checkpoint(net, path, serve, monkeypatch, cache):
    """`net` saved as a checkpoint at `path` and published (_publish), with pretrained's URL and cache directory set
    to it and `cache`: (the server, the name)."""
    import mindspore as ms

    ms.save_checkpoint(net, str(path))
    server, name = _publish(serve, path.read_bytes())
    monkeypatch.setenv(pretrained.URL_ENV, server.url(name))
    monkeypatch.setenv(pretrained.CACHE_ENV, str(cache))
    return server, name


def test_mindcvs_url_and_cache_are_the_defaults(monkeypatch):
    monkeypatch.delenv(pretrained.URL_ENV, raising=False)
    monkeypatch.delenv(pretrained.CACHE_ENV, raising=False)
    # mindcv/models/inceptionv4.py default_cfgs and mindcv/models/helpers.py get_checkpoint_download_root()
    assert pretrained.checkpoint_url() == \
        "https://download.mindspore.cn/toolkits/mindcv/inception_v4/inception_v4-db9c45b3.ckpt"
    assert pretrained.cache_dir() == os.path.expanduser("~/.mindspore/models")
    assert pretrained.expected_prefix(pretrained.checkpoint_url()) == "db9c45b3"
    mindcv_models = pytest.importorskip("mindcv.models.inceptionv4", reason="mindcv==0.3.0 is the oracle")
    assert mindcv_models.default_cfgs["inception_v4"]["url"] == pretrained.PRETRAINED_URL


def test_downloads_once_verifies_and_then_uses_the_cache(tmp_path, serve):
    body = b"weights" * 1000
    (server, name), lines = _publish(serve, body), []
    path = pretrained.pretrained_checkpoint(lines.append, server.url(name), str(tmp_path))
    assert path == str(tmp_path / name) and (tmp_path / name).read_bytes() == body
    assert pretrained.pretrained_checkpoint(lines.append, server.url(name), str(tmp_path)) == path
    assert server.requests == [name]  # the second call read the cache
    assert lines == [f"pretrained: downloading {server.url(name)} into {tmp_path}",
                     f"pretrained: {path} verified (sha256 {name[13:21]}...)"]
    assert sorted(os.listdir(tmp_path)) == [f".{name}.lock", name]


def test_a_file_that_fails_its_checksum_is_refused_and_not_kept(tmp_path, serve):
    name = "inception_v4-00000000.ckpt"
    server = serve({name: b"not the published weights"})
    with pytest.raises(RecipeError) as info:
        pretrained.pretrained_checkpoint(lambda _line: None, server.url(name), str(tmp_path))
    actual = hashlib.sha256(b"not the published weights").hexdigest()[:8]
    assert str(info.value) == (f"recipe key 'pretrained': {server.url(name)} has sha256 {actual}..., not the "
                               f"00000000 in its name; not used")
    assert os.listdir(tmp_path) == [f".{name}.lock"]  # no partial or unverified file stays


def test_an_unreachable_server_is_one_retryable_line(tmp_path):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/inception_v4-db9c45b3.ckpt"
    with pytest.raises(pretrained.PretrainedUnavailable) as info:
        pretrained.pretrained_checkpoint(lambda _line: None, url, str(tmp_path))
    message = str(info.value)
    assert message.startswith(f"pretrained checkpoint {url} cannot be downloaded (")
    assert message.endswith(f"); put inception_v4-db9c45b3.ckpt into {tmp_path} or set INCV4_PRETRAINED_URL to a "
                            "mirror")
    assert "\n" not in message and os.listdir(tmp_path) == [".inception_v4-db9c45b3.ckpt.lock"]


def _hold_lock(directory, name: str) -> int:
    """Take the download lock as another process on the node would (flock is per open file, so a second open in
    this process conflicts with it just the same)."""
    import fcntl

    fd = os.open(os.path.join(directory, f".{name}.lock"), os.O_CREAT | os.O_RDWR, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def test_a_lock_held_forever_is_one_retryable_line_after_the_wait(tmp_path, serve):
    body = b"weights" * 10
    server, name = _publish(serve, body)
    holder = _hold_lock(tmp_path, name)
    try:
        started = time.monotonic()
        with pytest.raises(pretrained.PretrainedUnavailable) as info:
            pretrained.pretrained_checkpoint(lambda _line: None, server.url(name), str(tmp_path), lock_wait_s=0.3)
        waited = time.monotonic() - started
    finally:
        os.close(holder)
    assert 0.3 <= waited < 5
    assert str(info.value) == (f"pretrained checkpoint {server.url(name)}: another process held "
                               f"{tmp_path / f'.{name}.lock'} for more than 0.3s (a hung download?); stop it or set "
                               f"INCV4_PRETRAINED_DIR to another directory")
    assert server.requests == [] and os.listdir(tmp_path) == [f".{name}.lock"]  # the holder's lock file stays
    # the failed waiter let go of its descriptor: the lock is free for the next attempt
    assert pretrained.pretrained_checkpoint(lambda _line: None, server.url(name), str(tmp_path),
                                            lock_wait_s=0.3) == str(tmp_path / name)


def test_a_lock_released_within_the_wait_is_taken_and_the_holders_file_used(tmp_path, serve):
    body = b"weights" * 10
    server, name = _publish(serve, body)
    holder = _hold_lock(tmp_path, name)

    def finish_download():  # the holder writes the verified file, then lets go
        time.sleep(0.3)
        (tmp_path / name).write_bytes(body)
        os.close(holder)

    thread = threading.Thread(target=finish_download)
    thread.start()
    try:
        path = pretrained.pretrained_checkpoint(lambda _line: None, server.url(name), str(tmp_path), lock_wait_s=30)
    finally:
        thread.join()
    assert path == str(tmp_path / name) and server.requests == []  # waited, then read the holder's download


def test_the_default_lock_wait_outlasts_the_holders_read_timeout():
    assert pretrained.LOCK_WAIT_S > pretrained.READ_TIMEOUT_S


def test_a_missing_file_on_the_server_names_the_http_status(tmp_path, serve):
    server = serve({})
    with pytest.raises(pretrained.PretrainedUnavailable, match=r"\(HTTP 404 Not Found\)"):
        pretrained.pretrained_checkpoint(lambda _line: None, server.url("inception_v4-db9c45b3.ckpt"), str(tmp_path))


def test_a_cached_file_that_fails_its_checksum_is_refused_and_left_alone(tmp_path):
    (tmp_path / "inception_v4-db9c45b3.ckpt").write_bytes(b"someone else's file")
    with pytest.raises(RecipeError, match=r"^recipe key 'pretrained': cached '.*inception_v4-db9c45b3.ckpt' does not "
                                          r"match the sha256 db9c45b3 in its name; remove it to download it again$"):
        pretrained.pretrained_checkpoint(lambda _line: None, "http://127.0.0.1:9/inception_v4-db9c45b3.ckpt",
                                         str(tmp_path))
    assert (tmp_path / "inception_v4-db9c45b3.ckpt").read_bytes() == b"someone else's file"


def test_a_url_without_mindcvs_hash_is_refused():
    with pytest.raises(RecipeError, match="is not named <model>-<sha256 prefix>.ckpt"):
        pretrained.expected_prefix("https://mirror.example/weights.ckpt")


@pytest.mark.parametrize("raw, message", [
    ({"pretrained": True, "ckpt_path": "w.ckpt"},
     "recipe key 'pretrained': MindCV takes either pretrained or ckpt_path, not both"),
    ({"pretrained": True, "in_channels": 4, "mean": [0] * 4, "std": [1] * 4},
     "recipe key 'in_channels': the pretrained weights take 3 channels (or 1, summed), got 4"),
])
def test_combinations_mindcv_refuses(raw, message):
    from incv4.trainer import recipe as rc

    with pytest.raises(RecipeError) as info:
        rc.validate(raw)
    assert str(info.value) == message


def test_loads_as_mindcvs_load_pretrained(tmp_path, serve, monkeypatch):
    """MindCV's published-shape checkpoint (1000 classes, 3 channels) into a 10-class, 1-channel network: the
    same weights as MindCV's load_pretrained gives its own network from the same file."""
    pytest.importorskip("mindspore")
    helpers = pytest.importorskip("mindcv.models.helpers", reason="mindcv==0.3.0 is the oracle")
    download = pytest.importorskip("mindcv.utils.download")
    from mindcv.models import inception_v4 as mindcv_inception_v4

    from incv4.trainer.model.inception_v4 import inception_v4

    server, name = _publish_checkpoint(mindcv_inception_v4(), tmp_path / "source.ckpt", serve, monkeypatch,
                                       tmp_path / "ours")
    ours, lines = inception_v4(num_classes=10, in_channels=1), []
    fresh_classifier = ours.classifier.weight.asnumpy().copy()
    pretrained.load_pretrained(ours, 10, 1, lines.append)

    monkeypatch.setattr(download, "_DEFAULT_DOWNLOAD_ROOT", str(tmp_path / "theirs"))
    theirs = mindcv_inception_v4(num_classes=10, in_channels=1)
    cfg = {"url": server.url(name), "num_classes": 1000, "first_conv": "features.0.conv2d_1a_3x3.conv",
           "classifier": "classifier"}
    helpers.load_pretrained(theirs, cfg, num_classes=10, in_channels=1)
    theirs_values = {p.name: p.asnumpy() for p in theirs.get_parameters()}
    for param in ours.get_parameters():
        if not param.name.startswith("classifier."):
            np.testing.assert_array_equal(param.asnumpy(), theirs_values[param.name], err_msg=param.name)
    assert ours.features[0].conv2d_1a_3x3.conv.weight.shape == (32, 1, 3, 3)
    np.testing.assert_array_equal(ours.classifier.weight.asnumpy(), fresh_classifier)
    assert lines[-3:] == ["pretrained: first convolution summed over its 3 input channels for in_channels 1",
                          "pretrained: the classifier starts fresh for num_classes 10",
                          f"pretrained: loaded 745 parameters from {tmp_path / 'ours' / name}"]


def test_validate_with_pretrained_and_no_checkpoint_evaluates_the_published_weights(tmp_path, serve, monkeypatch,
                                                                                     pynative):
    """MindCV's validate.py with pretrained: True and no ckpt_path evaluates the published weights; an unreachable
    server is a ValidateError (one line, exit 1) there."""
    pytest.importorskip("mindspore")
    from incv4.trainer import recipe as rc
    from incv4.trainer.data.demo import write_demo_dataset
    from incv4.trainer.model.inception_v4 import inception_v4
    from incv4.trainer.training import evaluate

    write_demo_dataset(str(tmp_path / "data"), num_classes=3, train_per_class=1, val_per_class=1)
    server, name = _publish_checkpoint(inception_v4(), tmp_path / "published.ckpt", serve, monkeypatch,
                                       tmp_path / "cache")
    recipe = rc.load(rc.shipped_path("inception_v4_cpu_demo.yaml"), ["pretrained=true", "num_classes=3", "mode=1"],
                     data_dir=str(tmp_path / "data"))
    lines = []
    accuracy = evaluate.run_validate(recipe, "", lines.append)
    assert accuracy.samples == 3 and server.requests == [name]
    assert f"pretrained: loaded 745 parameters from {tmp_path / 'cache' / name}" in lines
    monkeypatch.setenv(pretrained.URL_ENV, "http://127.0.0.1:9/inception_v4-db9c45b3.ckpt")
    with pytest.raises(evaluate.ValidateError, match=r"^pretrained checkpoint .* cannot be downloaded"):
        evaluate.run_validate(recipe, "", lines.append)
