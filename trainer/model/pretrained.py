"""MindCV's `pretrained: True`: start from MindCV's published InceptionV4 weights.

As MindCV's create_model(pretrained=True) (mindcv/models/helpers.py load_pretrained, 0.3.0): the checkpoint at
MindCV's URL (mindcv/models/inceptionv4.py default_cfgs) is downloaded once into a cache directory (MindCV's
`~/.mindspore/models`), then loaded by name; for another `num_classes` the classifier keeps its fresh
initialisation, for `in_channels: 1` the first convolution's weights are summed over the colour channels.

Unlike MindCV, the download is verified: MindCV names each checkpoint `<model>-<first 8 hex digits of its
sha256>.ckpt` (mindcv configs/README.md), and a file whose sha256 does not start with them is refused. It is
written to a temporary name and renamed, so the cache never holds half a file, and concurrent ranks on one host
download it once (a lock file beside it, waited for at most LOCK_WAIT_S). A server that cannot be reached, or
a lock held past that wait, is one line and a retryable failure (PretrainedUnavailable); a file that fails its
checksum is one line and a usage error (RecipeError).
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Callable, Optional

from incv4.trainer.recipe import RecipeError

PRETRAINED_URL = "https://download.mindspore.cn/toolkits/mindcv/inception_v4/inception_v4-db9c45b3.ckpt"
URL_ENV = "INCV4_PRETRAINED_URL"  # a mirror serving the same file name (clusters without internet access)
CACHE_ENV = "INCV4_PRETRAINED_DIR"
DEFAULT_CACHE = os.path.join("~", ".mindspore", "models")  # MindCV's get_checkpoint_download_root()
READ_TIMEOUT_S = 60  # per connect and per read: a stalled server fails the run instead of hanging it
# The holder's reads are bounded, its whole download is not: 30 read timeouts leave a slow-but-live download
# (the ~170 MB checkpoint at 0.1 MB/s) time to finish, while a holder hung for good fails its waiters.
LOCK_WAIT_S = 30 * READ_TIMEOUT_S
LOCK_POLL_S = 0.2
FIRST_CONV = "features.0.conv2d_1a_3x3.conv.weight"
CLASSIFIER = ("classifier.weight", "classifier.bias")
PUBLISHED_CLASSES = 1000
_HASHED_NAME = re.compile(r".+-([0-9a-f]{8,64})\.ckpt")


class PretrainedUnavailable(RuntimeError):
    """The pretrained checkpoint could not be downloaded (network, server): one line, retryable."""


def checkpoint_url() -> str:
    return os.environ.get(URL_ENV) or PRETRAINED_URL


def cache_dir() -> str:
    return os.path.expanduser(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def expected_prefix(url: str) -> str:
    """The sha256 prefix MindCV puts in a checkpoint's file name."""
    name = os.path.basename(urllib.parse.urlparse(url).path)
    match = _HASHED_NAME.fullmatch(name)
    if not match:
        raise RecipeError(f"recipe key 'pretrained': {url} is not named <model>-<sha256 prefix>.ckpt as MindCV "
                          f"names its checkpoints, so it cannot be verified")
    return match.group(1)


def pretrained_checkpoint(say: Callable[[str], None], url: Optional[str] = None,
                          directory: Optional[str] = None, lock_wait_s: float = LOCK_WAIT_S) -> str:
    """The verified local copy of the pretrained checkpoint, downloaded into the cache when it is not there."""
    url, directory = url or checkpoint_url(), directory or cache_dir()
    prefix = expected_prefix(url)
    path = os.path.join(directory, os.path.basename(urllib.parse.urlparse(url).path))
    try:
        os.makedirs(directory, exist_ok=True)
        with _download_lock(path, url, lock_wait_s):
            if not os.path.isfile(path):
                _download(url, path, prefix, say)
    except OSError as err:
        raise RecipeError(f"recipe key 'pretrained': cache directory '{directory}' is not writable "
                          f"({err.strerror or err}); set {CACHE_ENV}") from None
    if not sha256_of(path).startswith(prefix):  # a cached file incv4 did not verify: never replaced
        raise RecipeError(f"recipe key 'pretrained': cached '{path}' does not match the sha256 {prefix} in its name; "
                          f"remove it to download it again")
    return path


class _download_lock:
    """An exclusive lock beside `path`, so ranks sharing a cache download once; the kernel drops it if the holder
    dies, and a holder that hangs (another process on a shared cache) is waited for at most `wait_s`."""

    def __init__(self, path: str, url: str, wait_s: float):
        self.lock_path = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.lock")
        self.url, self.wait_s = url, wait_s

    def __enter__(self):
        self.fd = os.open(self.lock_path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            self._acquire()
        except BaseException:
            os.close(self.fd)
            raise
        return self

    def _acquire(self) -> None:
        """Poll a non-blocking flock: a blocking one has no timeout."""
        import fcntl

        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PretrainedUnavailable(
                        f"pretrained checkpoint {self.url}: another process held {self.lock_path} for more than "
                        f"{self.wait_s:g}s (a hung download?); stop it or set {CACHE_ENV} to another "
                        f"directory") from None
                time.sleep(min(LOCK_POLL_S, remaining))

    def __exit__(self, *exc):
        os.close(self.fd)  # closing releases the lock; the empty lock file stays for the next run


def _download(url: str, path: str, prefix: str, say: Callable[[str], None]) -> None:
    """Download to a temporary name, check the sha256 prefix, then rename into place. Local file errors (a full
    disk) propagate as OSError."""
    tmp = os.path.join(os.path.dirname(path), f".tmp-{os.path.basename(path)}.{os.getpid()}")
    say(f"pretrained: downloading {url} into {os.path.dirname(path)}")
    try:
        with open(tmp, "wb") as out:
            _fetch(url, out, os.path.basename(path), os.path.dirname(path))
        actual = sha256_of(tmp)
        if not actual.startswith(prefix):
            raise RecipeError(f"recipe key 'pretrained': {url} has sha256 {actual[:len(prefix)]}..., not the "
                              f"{prefix} in its name; not used")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)  # incv4's own partial file
    say(f"pretrained: {path} verified (sha256 {prefix}...)")


_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError)


def _fetch(url: str, out, name: str, directory: str) -> None:
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "incv4"})
        with urllib.request.urlopen(request, timeout=READ_TIMEOUT_S) as response:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
    except _NETWORK_ERRORS as err:
        raise PretrainedUnavailable(f"pretrained checkpoint {url} cannot be downloaded ({_reason(err)}); put "
                                    f"{name} into {directory} or set {URL_ENV} to a mirror") from None


def _reason(err: BaseException) -> str:
    reason = getattr(err, "reason", None) or err
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    text = str(reason).strip()
    return text.splitlines()[0] if text else type(err).__name__


def adapt(params: dict, num_classes: int, in_channels: int, say: Callable[[str], None]) -> dict:
    """MindCV's load_pretrained adjustments: the classifier left out for another class count, the first
    convolution summed over its input channels for one-channel input."""
    import mindspore as ms

    if in_channels == 1:
        summed = params[FIRST_CONV].sum(axis=1, keepdims=True)  # MindSpore's sum, as MindCV's
        params[FIRST_CONV] = ms.Parameter(summed, name=FIRST_CONV)
        say("pretrained: first convolution summed over its 3 input channels for in_channels 1")
    if num_classes != PUBLISHED_CLASSES:
        for name in CLASSIFIER:
            params.pop(name, None)
        say(f"pretrained: the classifier starts fresh for num_classes {num_classes}")
    return params


def load_pretrained(network, num_classes: int, in_channels: int, say: Callable[[str], None]) -> None:
    """Load the verified pretrained weights into `network` (strictly: every other parameter must be there)."""
    import mindspore as ms

    path = pretrained_checkpoint(say)
    try:
        params = ms.load_checkpoint(path)
    except Exception as err:  # MindSpore raises ValueError/RuntimeError for damaged files
        raise RecipeError(f"recipe key 'pretrained': '{path}' does not load ({_reason(err)})") from None
    params = adapt(params, num_classes, in_channels, say)
    not_loaded, _ = ms.load_param_into_net(network, params, strict_load=False)
    expected_fresh = set(CLASSIFIER) if num_classes != PUBLISHED_CLASSES else set()
    missing = [name for name in not_loaded if name not in expected_fresh]
    if missing:
        raise RecipeError(f"recipe key 'pretrained': '{path}' lacks {len(missing)} parameters of InceptionV4 "
                          f"(e.g. {missing[0]})")
    say(f"pretrained: loaded {len(params)} parameters from {path}")
