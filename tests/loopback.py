"""Loopback stand-ins for the study's download sources, for tests without internet.

- ``FileServer``: a folder over http with Range requests (resume), and a switch that cuts a response short
  (an interrupted download).
- ``HubServer``: the part of the Hugging Face hub's HTTP API that ``huggingface_hub`` uses to list and download a
  revision (``/api/{models,datasets}/<repo>/tree/<rev>``, ``/<repo>/resolve/<rev>/<file>``), with gated repos
  answered as the hub answers them (401, ``X-Error-Code: GatedRepo``) unless the request carries the token.
  Point ``HF_ENDPOINT`` at it.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path
from urllib.parse import unquote, urlparse


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args):  # quiet
        pass

    def _send_file(self, path: Path, extra: dict, head: bool):
        data = path.read_bytes()
        start, status = 0, 200
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0] or 0)
            status = 206
            if start >= len(data):  # nothing there: as real servers answer
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        body = data[start:]
        # an interrupted transfer: announce everything, send part
        cut = None if head else self.server.cut_after.pop(path.name, None)
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Accept-Ranges", "bytes")
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()
        if head:
            return
        self.server.requests.append((self.command, self.path, rng))
        self.wfile.write(body if cut is None else body[:cut])
        if cut is not None:
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)

    def do_HEAD(self):
        self.do_GET(head=True)

    def do_GET(self, head: bool = False):
        self.server.route(self, unquote(urlparse(self.path).path), head)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.cut_after: dict[str, int] = {}
        self.requests: list = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def route(self, handler: _Handler, path: str, head: bool):
        raise NotImplementedError

    def close(self):
        self.shutdown()
        self.server_close()


class FileServer(_Server):
    """Serves ``root`` at ``url``; ``cut_after[name] = n`` sends only n bytes of the next response for file name."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        super().__init__()

    def route(self, handler, path, head):
        file = self.root / path.lstrip("/")
        if not file.is_file():
            handler.send_error(404)
            return
        handler._send_file(file, {}, head)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class HubServer(_Server):
    """Repos from local folders: ``add(repo, folder, revision, repo_type, gated)``. Files whose name ends in
    .safetensors/.bin/.zip are listed as LFS files (with their sha256), as the hub lists weights and archives."""

    LFS = (".safetensors", ".bin", ".zip", ".json.gz")

    def __init__(self, token: str = "hf_test_token"):
        self.token = token
        self.repos: dict[tuple[str, str], dict] = {}
        self.unknown: list[str] = []
        self.reject_token: str | None = None  # answered 401 "invalid credentials", as the hub does
        super().__init__()

    def add(self, repo: str, folder: str | Path, revision: str, repo_type: str = "model", gated: bool = False):
        self.repos[(repo_type, repo)] = {"folder": Path(folder), "revision": revision, "gated": gated}

    def _repo(self, handler, repo_type, repo, rev):
        if self.reject_token and handler.headers.get("Authorization") == f"Bearer {self.reject_token}":
            handler.send_response(401)
            handler.send_header("X-Error-Message", "Invalid credentials in Authorization header")
            handler.end_headers()
            return None
        spec = self.repos.get((repo_type, repo))
        if spec is None:
            handler.send_response(404)
            handler.send_header("X-Error-Code", "RepoNotFound")
            handler.end_headers()
            return None
        if spec["gated"] and handler.headers.get("Authorization") != f"Bearer {self.token}":
            handler.send_response(401)
            handler.send_header("X-Error-Code", "GatedRepo")
            handler.send_header("X-Error-Message", f"Access to model {repo} is restricted.")
            handler.end_headers()
            return None
        if rev not in (spec["revision"], "main"):
            handler.send_response(404)
            handler.send_header("X-Error-Code", "RevisionNotFound")
            handler.end_headers()
            return None
        return spec

    def route(self, handler, path, head):
        parts = path.strip("/").split("/")
        if parts[0] == "api" and (len(parts) < 6 or parts[4] != "tree"):
            self.unknown.append(path)  # an API this stand-in does not serve
            handler.send_error(404)
            return
        if parts[0] == "api":  # /api/{models,datasets}/org/name/tree/rev
            repo_type, repo, rev = parts[1][:-1], "/".join(parts[2:4]), parts[5]
            spec = self._repo(handler, repo_type, repo, rev)
            if spec is None:
                return
            listing = []
            for f in sorted(p for p in spec["folder"].rglob("*") if p.is_file()):
                rel, size = f.relative_to(spec["folder"]).as_posix(), f.stat().st_size
                entry = {"type": "file", "path": rel, "size": size, "oid": hashlib.sha1(f.read_bytes()).hexdigest()}
                if f.name.endswith(self.LFS):
                    entry["lfs"] = {"oid": _sha256(f), "size": size, "pointerSize": 134}
                listing.append(entry)
            body = json.dumps(listing).encode()
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
            return
        repo_type = "dataset" if parts[0] == "datasets" else "model"
        parts = parts[1:] if repo_type == "dataset" else parts
        repo, rev, rel = "/".join(parts[:2]), parts[3], "/".join(parts[4:])  # org/name/resolve/rev/file
        spec = self._repo(handler, repo_type, repo, rev)
        if spec is None:
            return
        file = spec["folder"] / rel
        if not file.is_file():
            handler.send_response(404)
            handler.send_header("X-Error-Code", "EntryNotFound")
            handler.end_headers()
            return
        etag = _sha256(file) if file.name.endswith(self.LFS) else hashlib.sha1(file.read_bytes()).hexdigest()
        handler._send_file(file, {"X-Repo-Commit": spec["revision"], "ETag": f'"{etag}"'}, head)
