"""Names that come from the Hub (or anyone answering in its place), checked before they become paths.

The downloader builds paths from the server's answers: the commit names the snapshot folder, the
etag names the blob, the file names the link, and a redirect says where to fetch. A mirror set
through `HF_ENDPOINT`, or anyone able to answer in the Hub's place, chooses those strings; with
`../../` in them, the server would choose where on the user's disk its bytes are written. So
every such name must have its exact form (a commit is 40 hex digits, an etag that names a blob
is a plain SHA-1 or SHA-256, a file name is a plain relative path), and every path written is
proven to lie inside its target folder, links resolved.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

COMMIT = re.compile(r"[0-9a-f]{40}")
ETAG = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # git blob id (SHA-1) or LFS SHA-256
PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")  # one component of a file or revision name
REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


class UnsafeNameError(ValueError):
    """The server's answer holds a name that must not become a path; nothing was written with it."""


def _hostile(what: str, value: object, endpoint: str) -> UnsafeNameError:
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    return UnsafeNameError(f"the server at {endpoint} answered with {what} {shown}, which is not a valid name: "
                           "nothing was written with it. If HF_ENDPOINT points to a mirror, check it (or unset it "
                           "to use huggingface.co), then run the download again")


def commit(value: object, endpoint: str) -> str:
    """The repository's commit: exactly 40 lowercase hex digits (it names the snapshot folder)."""
    if not isinstance(value, str) or not COMMIT.fullmatch(value):
        if value is None:
            raise UnsafeNameError(f"the server at {endpoint} did not say which commit of the repository it serves: "
                                  "it is not the Hugging Face Hub or is misbehaving. Check HF_ENDPOINT, or try again "
                                  "later")
        raise _hostile("the commit", value, endpoint)
    return value


def etag(value: object, name: str, endpoint: str) -> str:
    """A file's etag, when it names a blob in the cache: a plain SHA-1 or SHA-256, lowercase."""
    if value is None:
        raise UnsafeNameError(f"the server at {endpoint} sent no ETag for {name}, so the file cannot be identified "
                              "in the cache: it is not the Hugging Face Hub or is misbehaving. Check HF_ENDPOINT, or "
                              "try again later")
    if not isinstance(value, str) or not ETAG.fullmatch(value):
        raise _hostile(f"the etag of {name}", value, endpoint)
    return value


def file_name(value: object, endpoint: str) -> str:
    """A file's name in the repository: a relative path of plain components (no '..', no '/x')."""
    if not isinstance(value, str) or not value or "\\" in value:
        raise _hostile("the file name", value, endpoint)
    parts = PurePosixPath(value).parts
    if value.startswith("/") or not parts or not all(PART.fullmatch(p) for p in parts):
        raise _hostile("the file name", value, endpoint)
    return value


def revision(value: str) -> str:
    """A branch or tag the user asked for (it names a file under `refs/`)."""
    parts = value.split("/")
    if not all(PART.fullmatch(p) and p not in (".", "..") for p in parts):
        raise UnsafeNameError(f"revision {value!r} is not a valid branch, tag or commit name: use letters, digits, "
                              "'.', '_', '-' and '/' only")
    return value


def repo_id(value: str) -> str:
    if not REPO.fullmatch(value or "") or ".." in value:
        raise UnsafeNameError(f"repository {value!r} is not a Hub repository name: use owner/name, e.g. "
                              "nvidia/personaplex-7b-v1")
    return value


def download_url(location: object, name: str, endpoint: str) -> str:
    """Where the server redirects a download: an http(s) address (https unless the endpoint
    itself is plain http, as a local mirror is); never `file:` or another scheme."""
    if not isinstance(location, str):
        raise _hostile(f"the download address of {name}", location, endpoint)
    try:
        parts = urlsplit(location)
    except ValueError:
        raise _hostile(f"the download address of {name}", location, endpoint) from None
    allowed = {"https"} | ({"http"} if urlsplit(endpoint).scheme == "http" else set())
    if parts.scheme not in allowed or not parts.hostname:
        raise _hostile(f"the download address of {name}", location, endpoint)
    return location


def inside(root: Path, path: Path) -> Path:
    """`path` (links resolved), if it lies inside `root`; else UnsafeNameError. Called for every
    path the downloader writes, so a name that slipped past its check still cannot leave."""
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(path))
    if real != real_root and real_root not in real.parents:
        raise UnsafeNameError(f"refusing to write {path}: it lies outside {root} (a link or a name from the server "
                              "points elsewhere). Nothing was written there; delete the folder and download again")
    return path
