"""The model from the Hugging Face Hub: download, verify, unpack the voices, and find it again.

huggingface_hub speaks the Hub's protocol here (repository info with the files' SHA-256, the
per-file HEAD that reveals gating and the download location, its error types). The bytes are
fetched by our own loop because the installed huggingface_hub (2.x) writes each download to a
per-process temporary file that it deletes on failure: a 16.7 GB download interrupted at 90 %
would start over. Ours keeps `<blob>.incomplete` and continues it with an HTTP Range request,
hashing as it goes, so the SHA-256 check costs no second read.

Files land in the Hub cache with its documented layout (`blobs/<etag>`, `snapshots/<commit>/`
holding links, `refs/<revision>`), or flat in a folder the user picks. The snapshot folder is
the model directory our loader reads: `voices/` is unpacked next to the links (the Hub's own
cache tools accept plain files there, as on Windows) and `ppx_download.json` is written last, as
the record that every file was verified.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import ssl
import time
import typing as tp
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..engine.config import LM_WEIGHTS, MIMI_WEIGHTS, TEXT_TOKENIZER, VOICES_ARCHIVE, VOICES_DIR
from ..paths import data_dir
from . import hub_names
from .hub_names import inside
from .resources import write_json_atomic

DEFAULT_REPO = "nvidia/personaplex-7b-v1"
DEFAULT_ENDPOINT = "https://huggingface.co"
REQUIRED_FILES = (LM_WEIGHTS, MIMI_WEIGHTS, TEXT_TOKENIZER, VOICES_ARCHIVE)
OPTIONAL_FILES = ("config.json",)  # fetched only because the reference does (the Hub counts downloads by it)
MARKER = "ppx_download.json"
RECORD = "downloads.json"
CHUNK_SIZE = 1 << 20
DISK_MARGIN = 512 << 20  # voices, the Hub's metadata and some slack for the file system
RETRIES = 5  # per file, reset whenever bytes arrive
RETRY_WAIT = 1.0  # seconds, doubled on each failed attempt
TIMEOUT = 30.0
GB = 1e9

ProgressFn = tp.Callable[[int, int, float, float | None], None]  # done, total, bytes/s, seconds left


class HubError(ValueError):
    """A download problem the user can act on; the message says what happened and what to do."""


class TokenMissingError(HubError):
    pass


class TokenInvalidError(HubError):
    pass


class AccessDeniedError(HubError):
    pass


class NotFoundError(HubError):
    pass


class NetworkError(HubError):
    pass


class DiskSpaceError(HubError):
    pass


class ChecksumError(HubError):
    pass


class DownloadCancelled(Exception):
    """The user cancelled; what was downloaded is kept and the next run continues from there."""


@dataclass(frozen=True)
class RemoteFile:
    name: str
    size: int
    sha256: str | None  # LFS files: the Hub's SHA-256 of the content
    blob_id: str | None  # other files: git's blob id (SHA-1 over "blob <size>\0" + content)


@dataclass(frozen=True)
class RepoFiles:
    """What a repository must hold; `voices`: it ships `voices.tgz`, unpacked into `voices/`."""

    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    voices: bool = False


PERSONAPLEX_FILES = RepoFiles(REQUIRED_FILES, OPTIONAL_FILES, voices=True)


@dataclass
class DownloadResult:
    repo: str
    commit: str
    model_dir: Path
    downloaded: list[str] = field(default_factory=list)
    bytes_downloaded: int = 0
    already_complete: bool = False
    offline: bool = False


# --- Settings read at call time (huggingface_hub freezes its own at import) -------------------


def hub_endpoint(endpoint: str | None = None) -> str:
    return (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def _hf_home() -> Path:
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "huggingface"


def hf_cache_dir() -> Path:
    """The Hub cache huggingface_hub uses (`HF_HUB_CACHE`, else `HF_HOME/hub`)."""
    env = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    return Path(env).expanduser() if env else _hf_home() / "hub"


def token_path() -> Path:
    """Where huggingface_hub keeps the active token (`hf auth login` writes it)."""
    env = os.environ.get("HF_TOKEN_PATH")
    return Path(env).expanduser() if env else _hf_home() / "token"


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "on", "yes", "true")


def current_token() -> str | None:
    """`HF_TOKEN`, else the token huggingface_hub stored (`hf auth login` or `store_token`)."""
    env = (os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or "").strip()
    if env:
        return env
    try:
        stored = token_path().read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return stored or None


def store_token(token: str, endpoint: str | None = None, validate: bool = True) -> str | None:
    """Checks the token with the Hub (unless `validate` is False) and stores it where
    huggingface_hub reads it, for this app and every other Hub tool. Returns the user name."""
    token = token.strip()
    if not token:
        raise TokenMissingError("the token is empty: copy a token from https://huggingface.co/settings/tokens")
    user = None
    if validate:
        from huggingface_hub import HfApi

        try:
            user = HfApi(endpoint=hub_endpoint(endpoint)).whoami(token=token).get("name")
        except Exception as exc:
            raise _map_error(exc, "", None, True, hub_endpoint(endpoint)) from exc
    path = token_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # a secret: owner-only from the start
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token)
    tmp.replace(path)
    return user


# --- Errors ------------------------------------------------------------------------------------


def model_page(repo: str, endpoint: str | None = None) -> str:
    return f"{hub_endpoint(endpoint)}/{repo}"


def _is_network_error(exc: BaseException) -> bool:
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(exc, HfHubHTTPError):
        return False
    names = {c.__name__ for c in type(exc).__mro__}
    # httpx/httpx2 (huggingface_hub >= 1.0) and requests (older) name their transport errors so.
    return isinstance(exc, (OSError, urllib.error.URLError)) or bool(
        names & {"TransportError", "ConnectError", "TimeoutException", "ConnectionError", "Timeout", "NetworkError"}
    )


def _map_error(exc: BaseException, repo: str, revision: str | None, token_given: bool, endpoint: str) -> HubError:
    """Turns huggingface_hub's exceptions into one clear message per cause."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    page = model_page(repo, endpoint)
    new_token = f"create a read token at {endpoint}/settings/tokens"
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, RevisionNotFoundError):
        return NotFoundError(f"revision {revision!r} not found in {repo}: check the branch, tag or commit "
                             f"(see {page}/tree/main), or leave out --revision")
    if isinstance(exc, GatedRepoError):
        if status == 401 and not token_given:
            return TokenMissingError(
                f"{repo} is gated: downloading it needs a Hugging Face token. Accept the licence on {page}, "
                f"{new_token}, then run `ppx-desktop download --token hf_...` (or set HF_TOKEN)")
        if status == 401:
            return TokenInvalidError(f"the Hub refused your token (401): it is invalid, expired or revoked; "
                                     f"{new_token} and pass it with --token")
        return AccessDeniedError(
            f"your account has not been granted access to {repo} (403): open {page} while logged in, read the "
            "licence and click the button to agree and access the repository, wait for the access to show as "
            "granted, then run the download again. With a fine-grained token, also allow 'Read access to "
            "contents of all public gated repos you can access' in the token's settings")
    if isinstance(exc, RepositoryNotFoundError):
        hint = " If it is private, pass a token that can read it." if not token_given else ""
        return NotFoundError(f"repository {repo} not found on {endpoint}: check the name (owner/name).{hint}")
    if isinstance(exc, EntryNotFoundError):
        return NotFoundError(f"{repo} lacks a file this app needs ({exc}); it does not have the layout of "
                             f"{DEFAULT_REPO}")
    if isinstance(exc, HfHubHTTPError):
        if status == 401:
            if token_given:
                return TokenInvalidError(f"the Hub refused your token (401): it is invalid, expired or revoked; "
                                         f"{new_token} and pass it with --token")
            return TokenMissingError(f"the Hub asks for a token (401) to read {repo}: {new_token} and pass it "
                                     "with --token (or set HF_TOKEN)")
        if status == 403:
            return AccessDeniedError(f"the Hub denied access to {repo} (403): open {page} while logged in and "
                                     "accept the licence, and check that your token may read it")
        return HubError(f"the Hub answered with an error ({status}) for {repo}; try again later")
    if _is_network_error(exc):
        return NetworkError(f"cannot reach {endpoint} ({type(exc).__name__}: {exc}). Check your internet "
                            "connection, proxy (HTTPS_PROXY) or firewall, then run the download again; it "
                            "continues where it stopped.")
    return HubError(f"unexpected error from the Hub: {type(exc).__name__}: {exc}")


# --- Progress ------------------------------------------------------------------------------------


class _Progress:
    """Bytes done over all files, speed over a sliding window, and the cancel check."""

    WINDOW = 5.0  # seconds of history for the speed

    def __init__(self, total: int, done: int, callback: ProgressFn | None, cancel) -> None:
        self.total, self.done, self.callback, self.cancel = total, done, callback, cancel
        self.samples: list[tuple[float, int]] = [(time.monotonic(), done)]
        self.fetched = 0

    def check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise DownloadCancelled("download cancelled; run it again to continue where it stopped")

    def add(self, n: int) -> None:
        self.done += n
        self.fetched += max(n, 0)
        now = time.monotonic()
        self.samples.append((now, self.done))
        while len(self.samples) > 2 and now - self.samples[0][0] > self.WINDOW:
            self.samples.pop(0)
        t0, d0 = self.samples[0]
        speed = (self.done - d0) / (now - t0) if now > t0 else 0.0
        eta = (self.total - self.done) / speed if speed > 0 else None
        if self.callback is not None:
            self.callback(self.done, self.total, speed, eta)
        self.check()


# --- Fetching bytes -----------------------------------------------------------------------------


def _ssl_context() -> ssl.SSLContext:
    try:  # the system's trust store, like huggingface_hub's HTTP client
        import truststore

        return truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    except ImportError:
        return ssl.create_default_context()


def _new_hasher(remote: RemoteFile):
    if remote.sha256:
        return hashlib.sha256()
    if remote.blob_id:
        h = hashlib.sha1()  # noqa: S324 - git's object id, not a security measure
        h.update(f"blob {remote.size}\0".encode())
        return h
    return None


def _expected_digest(remote: RemoteFile) -> str | None:
    return remote.sha256 or remote.blob_id


def _hash_file(path: Path, hasher, cancel=None) -> None:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            hasher.update(chunk)
            if cancel is not None and cancel.is_set():
                raise DownloadCancelled("cancelled while checking a file; run the download again to continue")


def _write(f, chunk: bytes, path: Path) -> None:
    try:
        f.write(chunk)
    except OSError as exc:
        raise DiskSpaceError(f"could not write {path}: {exc.strerror or exc}. The disk is probably full: free "
                             "some space and run the download again; it continues where it stopped.") from exc


def _fetch(url: str, partial: Path, remote: RemoteFile, headers: dict[str, str], send_auth: bool,
           progress: _Progress) -> None:
    """Appends the rest of `remote` to `partial`, resuming with Range; verifies size and digest.

    `send_auth` is False when `url` is a CDN's signed address: the token must not leave the Hub."""
    hasher = _new_hasher(remote)
    have = partial.stat().st_size if partial.exists() else 0
    if have > remote.size:
        partial.unlink()
        have = 0
    if have and hasher is not None:
        _hash_file(partial, hasher, progress.cancel)
    opener = _http_opener()
    attempts, last_error = 0, None
    while have < remote.size:
        progress.check()
        request = urllib.request.Request(url)
        for key, value in headers.items():
            if key.lower() != "authorization":
                request.add_header(key, value)
            elif send_auth:  # unredirected: urllib must not forward it if the Hub redirects elsewhere
                request.add_unredirected_header(key, value)
        if have:
            request.add_header("Range", f"bytes={have}-")
        try:
            with opener.open(request, timeout=TIMEOUT) as response, partial.open("ab") as f:
                if have and response.status != 206:  # the server ignored Range: start over
                    f.truncate(0)
                    progress.add(-have)
                    have, hasher = 0, _new_hasher(remote)
                while chunk := response.read(CHUNK_SIZE):
                    if have + len(chunk) > remote.size:
                        raise ChecksumError(f"the server sent more than the {remote.size} bytes of {remote.name}")
                    _write(f, chunk, partial)
                    if hasher is not None:
                        hasher.update(chunk)
                    have += len(chunk)
                    attempts = 0
                    progress.add(len(chunk))
            if have < remote.size:
                raise http.client.IncompleteRead(b"", remote.size - have)
        except urllib.error.HTTPError as exc:
            if exc.code == 416:  # our partial does not fit the file: restart it
                partial.unlink(missing_ok=True)
                progress.add(-have)
                have, hasher = 0, _new_hasher(remote)
            elif exc.code < 500 and exc.code not in (408, 429):
                raise HubError(f"the download of {remote.name} was refused ({exc.code} {exc.reason}); run the "
                               "download again (it continues), or check your access on the model page") from exc
            last_error = exc
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as exc:
            last_error = exc
        else:
            continue
        attempts += 1
        if attempts > RETRIES:
            raise NetworkError(f"the download of {remote.name} keeps failing ({last_error}); check your "
                               "connection and run the download again: it continues where it stopped") from last_error
        time.sleep(RETRY_WAIT * 2 ** (attempts - 1))
    _verify_digest(partial, remote, hasher)


def _http_opener() -> urllib.request.OpenerDirector:
    """HTTP(S) only: urllib's default opener also reads file:, ftp: and data: addresses, which a
    server must never be able to point a download at (redirects included)."""
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(), urllib.request.HTTPHandler(),
                    urllib.request.HTTPSHandler(context=_ssl_context()), urllib.request.HTTPDefaultErrorHandler(),
                    urllib.request.HTTPRedirectHandler(), urllib.request.HTTPErrorProcessor(),
                    urllib.request.UnknownHandler()):
        opener.add_handler(handler)
    return opener


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


def _verify_digest(path: Path, remote: RemoteFile, hasher) -> None:
    size = path.stat().st_size
    if size != remote.size:
        path.unlink(missing_ok=True)
        raise ChecksumError(f"{remote.name}: got {size} bytes, the Hub lists {remote.size}; the file was deleted, "
                            "run the download again")
    expected = _expected_digest(remote)
    if hasher is not None and expected and hasher.hexdigest() != expected.lower():
        path.unlink(missing_ok=True)
        raise ChecksumError(f"{remote.name} is corrupted: its checksum does not match the Hub's "
                            f"({hasher.hexdigest()[:12]}... instead of {expected[:12]}...). It was deleted and "
                            "was not used; run the download again")


def _check_existing(path: Path, remote: RemoteFile, cancel) -> bool:
    """Whether a file already in place has the Hub's size and digest (a wrong one is deleted)."""
    if not path.is_file() or path.stat().st_size != remote.size:
        return False
    hasher = _new_hasher(remote)
    if hasher is None:
        return True
    _hash_file(path, hasher, cancel)
    if hasher.hexdigest() == (_expected_digest(remote) or "").lower():
        return True
    path.unlink()
    return False


# --- Where files go -----------------------------------------------------------------------------


@dataclass
class _Layout:
    """The Hub cache (`repo_root` set) or a flat folder of the user's choice."""

    model_dir: Path
    repo_root: Path | None = None

    def final(self, remote: RemoteFile, etag: str | None) -> Path:
        """Where the file's bytes go: proven inside the folder (the names were checked, and a
        link planted in the folder still cannot lead the write elsewhere)."""
        if self.repo_root is None:
            return inside(self.root, self.model_dir / remote.name)
        return inside(self.root, self.repo_root / "blobs" / etag)

    @property
    def root(self) -> Path:
        """The folder nothing is written outside of: the repository's cache folder, or the user's."""
        return self.repo_root if self.repo_root is not None else self.model_dir

    def place(self, remote: RemoteFile, etag: str | None) -> None:
        """Makes the finished file visible in the model directory."""
        if self.repo_root is None:
            return
        pointer, blob = inside(self.root, self.model_dir / remote.name), self.final(remote, etag)
        pointer.parent.mkdir(parents=True, exist_ok=True)
        if pointer.is_symlink() or pointer.exists():
            pointer.unlink()
        try:
            pointer.symlink_to(os.path.relpath(blob, pointer.parent))
        except (OSError, NotImplementedError):
            # Windows without symlink rights: the Hub's own code then moves the blob into the snapshot.
            os.replace(blob, pointer)


def _cache_repo_root(cache_dir: Path, repo: str) -> Path:
    return cache_dir / ("models--" + repo.replace("/", "--"))


def _is_commit(revision: str | None) -> bool:
    return bool(revision and re.fullmatch(r"[0-9a-f]{40}", revision))


def _free_space(path: Path) -> int:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return shutil.disk_usage(Path.cwd()).free


# --- Completion record --------------------------------------------------------------------------


def _read_json(path: Path) -> dict | None:
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def check_model_dir(model_dir: Path, repo: str | None = None, commit: str | None = None,
                    files: RepoFiles = PERSONAPLEX_FILES) -> list[str]:
    """What is wrong with a downloaded model directory: [] when its verified-download record
    matches the files on disk (sizes; the hashes were checked when they were downloaded)."""
    marker = _read_json(model_dir / MARKER)
    if marker is None:
        return [f"no completed download recorded in {model_dir} ({MARKER} missing)"]
    problems = []
    if repo is not None and marker.get("repo") != repo:
        problems.append(f"{model_dir} holds {marker.get('repo')}, not {repo}")
    if commit is not None and marker.get("commit") != commit:
        problems.append(f"{model_dir} holds revision {str(marker.get('commit'))[:12]}, not {commit[:12]}")
    recorded = marker.get("files")
    if not isinstance(recorded, dict) or not all(isinstance(m, dict) and isinstance(n, str)
                                                 for n, m in recorded.items()):
        return problems + [f"the download record {model_dir / MARKER} is damaged"]
    for name, meta in recorded.items():
        path = model_dir / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif path.stat().st_size != meta.get("size"):
            problems.append(f"{name} has {path.stat().st_size} bytes instead of {meta.get('size')}")
    voices = model_dir / VOICES_DIR
    if files.voices and (not voices.is_dir() or not any(voices.glob("*.pt"))):
        problems.append(f"{VOICES_DIR}/ holds no voices")
    return problems


def _record(repo: str, commit: str, model_dir: Path) -> None:
    path = data_dir() / RECORD
    if path.is_dir():
        raise HubError(f"{path} is a folder, but the app keeps its record of downloads there: move it away")
    data = _read_json(path) or {}
    repos = data.get("repos") if isinstance(data.get("repos"), dict) else {}
    repos[repo] = {"model_dir": str(model_dir), "commit": commit, "time": time.time()}
    write_json_atomic(path, {"format": 1, "last": repo, "repos": repos})


def _local_complete(repo: str, revision: str | None, local_dir: Path | None,
                    cache_dir: Path | None, files: RepoFiles = PERSONAPLEX_FILES) -> tuple[Path, str] | None:
    """A complete download of `repo` at `revision` found without the network."""
    if local_dir is not None:
        dirs = [Path(local_dir)]
    else:
        root = _cache_repo_root(cache_dir or hf_cache_dir(), repo)
        commit = revision if _is_commit(revision) else None
        if commit is None:
            ref = root / "refs" / (revision or "main")
            try:
                commit = ref.read_text(encoding="utf-8").strip() if ref.is_file() else None
            except (OSError, UnicodeDecodeError):
                commit = None
        dirs = [root / "snapshots" / commit] if _is_commit(commit) else []  # a damaged ref names nothing
    for d in dirs:
        if d.is_dir() and not check_model_dir(d, repo, files=files):
            marker = _read_json(d / MARKER) or {}
            if not _is_commit(revision) or marker.get("commit") == revision:
                return d, str(marker.get("commit"))
    return None


def find_model_dir(repo: str = DEFAULT_REPO, files: RepoFiles = PERSONAPLEX_FILES) -> Path | None:
    """The directory of a complete, verified download of `repo`: the last one this app made,
    else the Hub cache's copy of the `main` revision. No network is used."""
    repos = (_read_json(data_dir() / RECORD) or {}).get("repos")
    entry = repos.get(repo) if isinstance(repos, dict) else None  # a damaged record is ignored
    if isinstance(entry, dict) and isinstance(entry.get("model_dir"), str) and entry["model_dir"]:
        d = Path(entry["model_dir"])
        try:
            if d.is_dir() and not check_model_dir(d, repo, files=files):
                return d
        except OSError:  # a recorded folder that cannot be read any more: look in the cache instead
            pass
    found = _local_complete(repo, None, None, None, files)
    return found[0] if found else None


# --- The download -------------------------------------------------------------------------------


def _remote_files(info, repo: str, wanted: RepoFiles = PERSONAPLEX_FILES) -> list[RemoteFile]:
    # Only the files this app needs are fetched, by their own names; others in the answer are ignored.
    siblings = {s.rfilename: s for s in (info.siblings or []) if s.rfilename in wanted.required + wanted.optional}
    missing = [n for n in wanted.required if n not in siblings]
    if missing:
        layout = DEFAULT_REPO if wanted is PERSONAPLEX_FILES else "the expected repository"
        raise NotFoundError(f"{repo} has no {', '.join(missing)}: it does not have the layout of {layout}")
    files = []
    for name in wanted.required + tuple(n for n in wanted.optional if n in siblings):
        s = siblings[name]
        lfs = s.lfs
        size = (lfs["size"] if lfs else s.size)
        digest = lfs["sha256"] if lfs else s.blob_id
        if not isinstance(size, int) or size < 0:
            raise HubError(f"the Hub did not report a usable size of {name} in {repo} ({size!r}); try again later")
        if digest is not None and not (isinstance(digest, str) and hub_names.ETAG.fullmatch(digest.lower())):
            raise HubError(f"the Hub reported an invalid checksum for {name} in {repo} ({digest!r}); try again later")
        files.append(RemoteFile(name, size, digest if lfs else None, None if lfs else digest))
    return sorted(files, key=lambda f: f.size)  # the small files first: a wrong layout or access shows early


def download_model(repo: str = DEFAULT_REPO, revision: str | None = None, local_dir: str | Path | None = None,
                   token: str | None = None, endpoint: str | None = None, cache_dir: str | Path | None = None,
                   progress: ProgressFn | None = None, cancel=None, offline: bool | None = None,
                   log: tp.Callable[[str], None] | None = None,
                   files: RepoFiles = PERSONAPLEX_FILES) -> DownloadResult:
    """Downloads and verifies `repo` and unpacks its voices; returns the model directory.

    `files`: the repository's layout, PersonaPlex's by default (another model reuses the same
    verified, resumable download with its own file list).

    Args:
        local_dir: a flat folder to hold the files; default: the Hub cache (`cache_dir` or HF_HOME's).
        token: default `HF_TOKEN` or the stored token.
        endpoint: default `HF_ENDPOINT` or huggingface.co.
        progress: `progress(done_bytes, total_bytes, bytes_per_s, seconds_left)`, per chunk.
        cancel: a `threading.Event`; when set, `DownloadCancelled` is raised and partial files kept.
        offline: no network (default: `HF_HUB_OFFLINE`); only a complete download can be returned.
    """
    from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url

    from .voices import extract_voices

    say = log or (lambda _msg: None)
    endpoint = hub_endpoint(endpoint)
    hub_names.repo_id(repo)
    if revision is not None:
        hub_names.revision(revision)
    token = token or current_token()
    local_dir = Path(local_dir).expanduser().resolve() if local_dir is not None else None
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else hf_cache_dir()
    offline = is_offline() if offline is None else offline
    if offline:
        found = _local_complete(repo, revision, local_dir, cache_dir, files)
        if found is None:
            raise NetworkError(f"offline mode is on (HF_HUB_OFFLINE) and no complete download of {repo} was found; "
                               "unset HF_HUB_OFFLINE to download it")
        return DownloadResult(repo, found[1], found[0], already_complete=True, offline=True)
    try:
        info = HfApi(endpoint=endpoint).model_info(repo, revision=revision, files_metadata=True,
                                                   token=token or False)
    except Exception as exc:
        error = _map_error(exc, repo, revision, bool(token), endpoint)
        found = (_local_complete(repo, revision, local_dir, cache_dir, files)
                 if isinstance(error, NetworkError) else None)
        if found is None:
            raise error from exc
        say(f"cannot reach {endpoint}; using the complete download in {found[0]} (not checked for updates)")
        return DownloadResult(repo, found[1], found[0], already_complete=True, offline=True)
    commit = hub_names.commit(info.sha, endpoint)  # it names the snapshot folder
    wanted, files = files, _remote_files(info, repo, files)
    if local_dir is not None:
        layout = _Layout(local_dir)
    else:
        root = _cache_repo_root(cache_dir, repo)
        layout = _Layout(root / "snapshots" / commit, root)
    if not check_model_dir(layout.model_dir, repo, commit, wanted):
        _record(repo, commit, layout.model_dir)
        return DownloadResult(repo, commit, layout.model_dir, already_complete=True)

    metas = {}
    for remote in files:  # one HEAD per file: gating shows here, before any byte is written
        url = hf_hub_url(repo, remote.name, revision=commit, endpoint=endpoint)
        try:
            meta = get_hf_file_metadata(url, token=token or False, endpoint=endpoint)
        except Exception as exc:
            raise _map_error(exc, repo, revision, bool(token), endpoint) from exc
        if layout.repo_root is not None:  # the etag names the blob file
            hub_names.etag(meta.etag, remote.name, endpoint)
        hub_names.download_url(meta.location, remote.name, endpoint)
        metas[remote.name] = meta

    todo, have = [], 0
    for remote in files:
        final = layout.final(remote, metas[remote.name].etag)
        if _check_existing(final, remote, cancel):
            layout.place(remote, metas[remote.name].etag)
            continue
        partial = final.with_name(final.name + ".incomplete")
        part = partial.stat().st_size if partial.is_file() else 0
        todo.append((remote, final, partial))
        have += min(part, remote.size)
    total = sum(r.size for r, _, _ in todo)
    unpacked = sum(r.size for r in files if r.name == VOICES_ARCHIVE)  # the voices, once extracted
    need = total - have + unpacked + DISK_MARGIN
    storage = layout.repo_root or layout.model_dir
    free = _free_space(storage)
    if free < need:
        raise DiskSpaceError(f"not enough free disk space in {storage}: the download needs {need / GB:.1f} GB, "
                             f"{free / GB:.1f} GB are free. Free some space or pick another folder with --dir")

    tracker = _Progress(total, have, progress, cancel)
    headers = {"User-Agent": "ppx-desktop"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    for remote, final, partial in todo:
        tracker.check()
        meta = metas[remote.name]
        final.parent.mkdir(parents=True, exist_ok=True)
        say(f"downloading {remote.name} ({remote.size / GB:.2f} GB)")
        send_auth = _same_origin(meta.location, endpoint)
        start = tracker.done - (partial.stat().st_size if partial.is_file() else 0)
        try:
            _fetch(meta.location, partial, remote, headers, send_auth, tracker)
        except ChecksumError:
            # A corrupted file was deleted; one fresh try, then the error stands (never a bad file used).
            say(f"{remote.name} failed its checksum; downloading it once more")
            tracker.add(start - tracker.done)
            _fetch(meta.location, partial, remote, headers, send_auth, tracker)
        os.replace(partial, final)
        layout.place(remote, meta.etag)
    if layout.repo_root is not None and revision != commit:
        ref = inside(layout.root, layout.repo_root / "refs" / (revision or "main"))
        ref.parent.mkdir(parents=True, exist_ok=True)
        tmp = ref.with_name(ref.name + ".partial")
        tmp.write_text(commit, encoding="utf-8")
        tmp.replace(ref)
    voices = (extract_voices(layout.model_dir / VOICES_ARCHIVE, inside(layout.root, layout.model_dir / VOICES_DIR))
              if wanted.voices else [])
    write_json_atomic(inside(layout.root, layout.model_dir / MARKER), {
        "format": 1, "repo": repo, "commit": commit, "voices": voices,
        "files": {r.name: {"size": r.size, "sha256": r.sha256, "blob_id": r.blob_id} for r in files},
    })
    _record(repo, commit, layout.model_dir)
    return DownloadResult(repo, commit, layout.model_dir, [r.name for r, _, _ in todo], tracker.fetched)
