"""A local stand-in for the Hugging Face Hub, speaking what huggingface_hub and our downloader use.

- `GET /api/models/{repo}[/revision/{rev}]`: repository info with the files' sizes, blob ids and
  LFS SHA-256 (`?blobs=true`).
- `HEAD|GET /{repo}/resolve/{rev}/{file}`: `X-Repo-Commit`, `ETag`, `X-Linked-Etag` and
  `X-Linked-Size` for LFS files, `Content-Length`, `Range` requests answered with 206.
  With `cdn=True`, LFS files answer with a 302 to a second server (another origin), as the Hub
  does with its CDN.
- `GET /api/whoami-v2`: the token's owner.
- Errors carry the `X-Error-Code` / `X-Error-Message` headers huggingface_hub maps to its
  exception types (GatedRepo, RepoNotFound, RevisionNotFound, EntryNotFound, bad credentials).

Faults for tests: `drop_after[name] = n` closes the connection once after n bytes of the body;
`corrupt[name] = k` serves altered bytes k times. Every request is logged; body bytes are counted.

A hostile Hub for tests: `commit` may be anything (None: a null `sha`), `headers[name]` replaces
or (with None) removes headers of a file's resolve answer (`ETag`, `X-Linked-Etag`, `Location`),
`cdn_redirect` makes the CDN answer every request with a redirect there, and `extra_files` are
listed in the repository info with any name (they are never served).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

LFS_FILES = ("model.safetensors", "tokenizer-e351c8d8-checkpoint125.safetensors", "tokenizer_spm_32k_3.model",
             "voices.tgz")


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Logged:
    method: str
    path: str
    range: str | None
    auth: str | None
    server: str  # "hub" or "cdn"


@dataclass
class FakeHub:
    files: dict[str, bytes]
    repo: str = "nvidia/personaplex-7b-v1"
    gated: bool = False
    tokens: set[str] = field(default_factory=lambda: {"hf_good", "hf_not_granted"})
    granted: set[str] = field(default_factory=lambda: {"hf_good"})
    cdn: bool = False
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    drop_after: dict[str, int] = field(default_factory=dict)
    corrupt: dict[str, int] = field(default_factory=dict)
    log: list[Logged] = field(default_factory=list)
    served: dict[str, int] = field(default_factory=dict)
    headers: dict[str, dict[str, str | None]] = field(default_factory=dict)
    cdn_redirect: str | None = None
    extra_files: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        self.lock = threading.Lock()
        self._servers = []

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> FakeHub:
        for role in ("hub", "cdn"):
            server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, role))
            server.daemon_threads = True
            # A short poll keeps stop() quick; the default 0.5 s adds up over many tests.
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
            self._servers.append(server)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._servers[0].server_address[1]}"

    @property
    def cdn_url(self) -> str:
        return f"http://127.0.0.1:{self._servers[1].server_address[1]}"

    # --- content ---------------------------------------------------------------------------
    def is_lfs(self, name: str) -> bool:
        return name in LFS_FILES

    def sha256(self, name: str) -> str:
        return hashlib.sha256(self.files[name]).hexdigest()

    def etag(self, name: str) -> str:
        return self.sha256(name) if self.is_lfs(name) else git_blob_id(self.files[name])

    def model_info(self) -> dict:
        siblings = []
        for name, data in self.files.items():
            entry = {"rfilename": name, "size": len(data), "blobId": git_blob_id(data)}
            if self.is_lfs(name):
                entry["lfs"] = {"size": len(data), "sha256": self.sha256(name), "pointerSize": 134}
            siblings.append(entry)
        for name, size in self.extra_files.items():
            siblings.append({"rfilename": name, "size": size, "blobId": "0" * 40})
        return {"id": self.repo, "sha": self.commit, "private": False, "gated": "manual" if self.gated else False,
                "siblings": siblings}

    def requests(self, method: str | None = None, name: str | None = None) -> list[Logged]:
        return [r for r in self.log if (method is None or r.method == method) and (name is None or name in r.path)]


def _handler(hub: FakeHub, role: str):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def do_HEAD(self):
            self._serve(body=False)

        def do_GET(self):
            self._serve(body=True)

        # --- helpers ---------------------------------------------------------------------
        def _send(self, status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            if "Content-Length" not in (headers or {}):
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, status: int, code: str | None = None, message: str | None = None) -> None:
            headers = {"X-Repo-Commit": str(hub.commit)}
            if code:
                headers["X-Error-Code"] = code
            if message:
                headers["X-Error-Message"] = message
            self._send(status, headers, json.dumps({"error": message or code or str(status)}).encode())

        def _token(self) -> str | None:
            auth = self.headers.get("Authorization")
            return auth.split(" ", 1)[1] if auth and " " in auth else None

        def _serve(self, body: bool) -> None:
            path = self.path.split("?", 1)[0]
            token = self._token()
            with hub.lock:
                hub.log.append(Logged(self.command, path, self.headers.get("Range"), token, role))
            if role == "cdn":
                return self._cdn(path)
            if token is not None and token not in hub.tokens:
                return self._error(401, message="Invalid credentials in Authorization header")
            if path == "/api/whoami-v2":
                if token is None:
                    return self._error(401, message="Invalid credentials in Authorization header")
                return self._send(200, {"Content-Type": "application/json"},
                                  json.dumps({"name": "tester", "auth": {"accessToken": {"role": "read"}}}).encode())
            m = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path)
            if m:
                if m.group(1) != hub.repo:
                    return self._error(404, "RepoNotFound")
                if m.group(2) not in (None, "main", hub.commit):
                    return self._error(404, "RevisionNotFound")
                return self._send(200, {"Content-Type": "application/json"}, json.dumps(hub.model_info()).encode())
            m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
            if not m:
                return self._error(404)
            repo, rev, name = m.groups()
            name = unquote(name)  # file names with "@" arrive percent-encoded, as on the real Hub
            if repo != hub.repo:
                return self._error(404, "RepoNotFound")
            if rev not in ("main", hub.commit):
                return self._error(404, "RevisionNotFound")
            if hub.gated and token is None:
                return self._error(401, "GatedRepo", "Access to this model is restricted")
            if hub.gated and token not in hub.granted:
                return self._error(403, "GatedRepo", "You are not in the authorized list")
            if name not in hub.files:
                return self._error(404, "EntryNotFound")
            headers = {"X-Repo-Commit": str(hub.commit), "ETag": f'"{git_blob_id(hub.files[name])}"',
                       "Accept-Ranges": "bytes"}
            if hub.is_lfs(name):
                headers["X-Linked-Etag"] = f'"{hub.sha256(name)}"'
                headers["X-Linked-Size"] = str(len(hub.files[name]))
                if hub.cdn:
                    headers["Location"] = f"{hub.cdn_url}/cdn/{hub.sha256(name)}"
            for key, value in hub.headers.get(name, {}).items():
                if value is None:
                    headers.pop(key, None)
                else:
                    headers[key] = value
            if "Location" in headers:
                return self._send(302, headers)
            self._content(name, headers)

        def _cdn(self, path: str) -> None:
            if hub.cdn_redirect is not None:
                return self._send(302, {"Location": hub.cdn_redirect})
            sha = path.rsplit("/", 1)[-1]
            for name in hub.files:
                if hub.is_lfs(name) and hub.sha256(name) == sha:
                    return self._content(name, {"Accept-Ranges": "bytes", "ETag": f'"{sha}"'})
            self._error(404)

        def _content(self, name: str, headers: dict[str, str]) -> None:
            data = hub.files[name]
            with hub.lock:
                if self.command == "GET" and hub.corrupt.get(name, 0) > 0:
                    hub.corrupt[name] -= 1
                    data = bytes(b ^ 0x5A for b in data)
                drop = hub.drop_after.pop(name, None) if self.command == "GET" else None
            start, status = 0, 200
            rng = self.headers.get("Range")
            if rng:
                m = re.fullmatch(r"bytes=(\d+)-", rng)
                start = int(m.group(1)) if m else 0
                if start >= len(data):
                    return self._error(416)
                status = 206
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            part = data[start:]
            if self.command == "HEAD":
                return self._send(status, {**headers, "Content-Length": str(len(part))})
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(part)))
            self.end_headers()
            if drop is not None and start < drop:
                part = part[: drop - start]
                self.close_connection = True
            # Counted before sending: the client can finish reading (and the test look at the
            # count) before this thread runs again.
            with hub.lock:
                hub.served[name] = hub.served.get(name, 0) + len(part)
            self.wfile.write(part)
            self.wfile.flush()

    return Handler
