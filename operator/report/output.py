"""Writing a report file: only over nothing or over a report incv4 wrote (never a user's file, never through a
symlink), through a temporary file renamed into place."""
from __future__ import annotations

import os
import stat

from incv4.operator.report.data import ReportError
from incv4.trainer import contract

_HTML_SIGN = b"<!-- written by incv4 report -->"  # html_page.MARKER, the page's first line
_PNG_SIGN = b"\x89PNG\r\n\x1a\n"
_PNG_SOFTWARE = b"tEXtSoftware\x00incv4 report"  # plots.SOFTWARE in a text chunk, ahead of the image data
_HEAD_BYTES = 4096


def _written_by_report(path: str) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(_HEAD_BYTES)
    return head.startswith(_HTML_SIGN) or (head.startswith(_PNG_SIGN) and _PNG_SOFTWARE in head)


def check_target(path: str) -> None:
    """Raises ReportError (usage) when `path` cannot take a report; call before the work starts."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise ReportError(f"-o {path}: folder {folder} does not exist", contract.USAGE) from None
        return
    except OSError as err:
        raise ReportError(f"-o {path}: {err.strerror or err}", contract.USAGE) from None
    try:
        own = stat.S_ISREG(mode) and _written_by_report(path)
    except OSError as err:
        raise ReportError(f"-o {path}: {err.strerror or err}", contract.USAGE) from None
    if not own:
        raise ReportError(f"-o {path} exists and is not a report incv4 wrote; choose another file name",
                          contract.USAGE)


def write(path: str, data: bytes) -> None:
    check_target(path)
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".tmp-{os.path.basename(path)}.{os.getpid()}")
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError as err:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise ReportError(f"cannot write {path}: {err.strerror or err}", contract.FAILURE) from None
