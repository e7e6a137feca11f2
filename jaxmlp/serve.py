"""``jaxmlp serve``: a local web page of the runs under a folder, and a canvas to draw on.

The page (``jaxmlp/web/``: plain JavaScript, no library, nothing fetched from elsewhere)
lists every run and sweep under the folder, draws their curves as they train, shows
``jaxmlp eval``'s results, and runs a model's forward pass in the browser on a digit drawn
with mouse or touch. Its JSON comes from here:

    GET  /api/runs                         every run and sweep, newest first
    GET  /api/run?path=P                   one run: config, per-epoch history, evaluation
    GET  /api/model?path=P[&model=I]       the weights as float32 (base64), the architecture
    POST /api/predict?path=P[&model=I]     {"pixels": [784 grey levels]} -> jaxmlp.predict
    GET  /files/P/NAME                     a run's pictures (curves.png, confusion.png, ...)

The standard library's threaded HTTP server is enough for one user on loopback, and adds
nothing to install. It is read-only by construction: it opens run files only to read
(through ``jaxmlp.run``, and never its lock, so a trainer starting on a served folder is
never refused), serves only the pictures of run folders under the root (a ``..``, an
absolute path or a link that leads out of the root is a 404), refuses request bodies over
``_MAX_BODY`` (413), answers bad JSON with 400 and a message, and prints no tracebacks.
"""
import http.server
import json
import socket
import sys
import threading
import urllib.parse
from importlib import resources
from pathlib import Path

from jaxmlp._pages import (_PICTURES, _BadRequest, _describe, _find_runs, _model_json,
                           _predict_json, _rel, _run_view, _stamp)
from jaxmlp.arch import parse_arch
from jaxmlp.run import (CHECKPOINT, CONFIG, EVAL, METRICS, MODEL, MODELS, SUMMARY, SWEEP,
                        RunError, _load_model_of_sweep, load_model)

_MAX_BODY = 64 * 1024  # a 28×28 image as JSON is ~3 KB; a 32×32×3 one ~12 KB
_DRAIN = 8 << 20  # a larger body is refused unread: the client may then miss the 413
_ASSETS = {**{f"{m}.js": "text/javascript" for m in ("app", "dom", "plot", "draw", "digit")},
           "style.css": "text/css", "favicon.svg": "image/svg+xml"}
_PAGES = ("/", "/run", "/draw")  # each is index.html; app.js draws the page the path names
# The page's own files only: no inline script, nothing from another origin.
_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


class _HttpError(Exception):
    """An answer other than 200: its status and the one line that says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _inside(root: Path, rel: str) -> Path:
    """``root/rel`` resolved, when it names something inside ``root`` (``"."``: the root);
    else a 404, with no hint of what lies outside."""
    parts = rel.split("/")
    if rel != "." and (rel.startswith("/") or "\\" in rel or "\0" in rel
                       or any(p in ("", ".", "..") for p in parts)):
        raise _HttpError(404, f"no run {rel!r} here")
    path = (root / rel).resolve()
    if not path.is_relative_to(root) or not path.exists():
        raise _HttpError(404, f"no run {rel!r} here")
    return path


def _model_index(query: dict) -> int | None:
    value = query.get("model")
    if value is None:
        return None
    if not value.isdigit():
        raise _HttpError(400, f"model must be a model's index (0, 1, ...), got {value!r}")
    return int(value)


class _Site:
    """What the server knows: its root, the page's files, and the models it has loaded."""

    def __init__(self, root: Path, shown: Path):
        self.root, self.shown = root, shown  # resolved; as the user named it
        web = resources.files("jaxmlp") / "web"
        self.index = (web / "index.html").read_bytes()
        self.assets = {name: (web / name).read_bytes() for name in _ASSETS}
        self._models: dict = {}  # (folder, model) -> (stamp, run): reloaded when rewritten
        self._rows: dict = {}  # folder -> (stamp, its row of the runs page)
        self._lock = threading.Lock()

    def folder(self, query: dict) -> Path:
        rel = query.get("path")
        if rel is None:
            raise _HttpError(400, "which run? add ?path=FOLDER (as /api/runs lists them)")
        folder = _inside(self.root, rel)
        if not ((folder / CONFIG).is_file() or (folder / SWEEP).is_file()):
            raise _HttpError(404, f"no run {rel!r} here")
        return folder

    def runs(self) -> list[dict]:
        """Every run's row, newest first; a row is read again only when its files change
        (the page asks every 2 s)."""
        rows = []
        for folder in _find_runs(self.root):
            stamp = _stamp(*(folder / n for n in (CONFIG, SWEEP, METRICS)))
            with self._lock:
                cached = self._rows.get(folder)
            if not cached or cached[0] != stamp:
                cached = stamp, _describe(self.root, folder)
                with self._lock:
                    self._rows[folder] = cached
            rows.append(cached[1])
        return sorted(rows, key=lambda r: -r["modified"])

    def model(self, folder: Path, model: int | None):
        """``(arch, params, info, version)`` of the run in ``folder`` (model ``model`` of a
        sweep); ``version`` changes whenever the run saves new weights."""
        sweep = (folder / SWEEP).exists()
        if sweep != (model is not None):
            raise _HttpError(400, "a sweep's folder holds many models: add &model=I" if sweep
                             else "a single run holds one model: drop model=")
        stamp = _stamp(folder / (CHECKPOINT if sweep else MODEL))
        with self._lock:
            cached = self._models.get((folder, model))
        if cached and cached[0] == stamp:
            return (*cached[1], stamp)
        if sweep:
            config, params, _, info = _load_model_of_sweep(folder, model)
            loaded = (parse_arch(config.arch), params, info)
        else:
            loaded = load_model(folder / MODEL)
        with self._lock:
            self._models[(folder, model)] = (stamp, loaded)
        return (*loaded, stamp)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the page polls every second
    timeout = 30  # seconds a connection may stall (a slow body) before it is dropped
    server_version = "jaxmlp"
    site: _Site  # set on the subclass _make_server makes

    def log_message(self, format, *args):  # quiet: a request is no news
        pass

    def send_error(self, code, message=None, explain=None):
        """http.server's own refusals (a method it lacks, a malformed request line, too
        many headers) as the one-line JSON of every other answer."""
        self.close_connection = True
        reason = message or self.responses.get(code, ("error",))[0]
        self._send(code, "application/json", _error(Exception(reason)), {"Connection": "close"},
                   head=self.command == "HEAD" or code < 200 or code in (204, 304))

    def do_GET(self):
        self._answer(self._get)

    def do_HEAD(self):
        self._answer(self._get, head=True)

    def do_POST(self):
        self._answer(self._post)

    def _answer(self, route, head=False):
        try:
            self._check_host()
            url = urllib.parse.urlsplit(self.path)
            query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
            status, kind, body, extra = route(urllib.parse.unquote(url.path), query)
        except _HttpError as e:
            status, kind, body, extra = e.status, "application/json", _error(e), {}
        except _BadRequest as e:
            status, kind, body, extra = 400, "application/json", _error(e), {}
        except RunError as e:  # a run file that cannot be read: the page says which
            status, kind, body, extra = 409, "application/json", _error(e), {}
        except Exception as e:  # a bug: one line here, a message in the page
            print(f"jaxmlp serve: {self.command} {self.path[:200]}: {type(e).__name__}: {e}",
                  file=sys.stderr)
            status, kind, body, extra = 500, "application/json", _error(e), {}
        self._send(status, kind, body, extra, head)

    def _send(self, status, kind, body, extra, head=False):
        self.send_response(status)
        headers = {"Content-Type": kind, "Content-Length": str(len(body)),
                   "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                   "Cache-Control": "no-cache", **extra}
        if kind.startswith("text/html"):
            headers["Content-Security-Policy"] = _CSP
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if not head and status != 304:
            self.wfile.write(body)

    def _check_host(self):
        """Only requests addressed to this server: a web page elsewhere whose name was
        made to point at 127.0.0.1 (DNS rebinding) must not read the runs."""
        if len(self.headers.get_all("Host") or ()) > 1:
            raise _HttpError(400, "one Host header, please")
        host = self.server.server_address[0]
        if host in ("0.0.0.0", "::"):
            return
        given = (self.headers.get("Host") or "").lower()
        given = given[1:given.find("]")] if given.startswith("[") else given.split(":")[0]
        if given not in ("localhost", "127.0.0.1", "::1", host.lower()):
            raise _HttpError(403, f"this server answers to {host}, not {given!r}")

    def _json(self, obj, extra=None):
        return 200, "application/json", json.dumps(obj).encode(), extra or {}

    def _get(self, path, query):
        site = self.site
        if path in _PAGES:
            return 200, "text/html; charset=utf-8", site.index, {}
        name = path.removeprefix("/static/")
        if path.startswith("/static/") and name in _ASSETS:
            return 200, _ASSETS[name] + "; charset=utf-8", site.assets[name], {}
        if path == "/api/runs":
            return self._json({"root": str(site.shown), "runs": site.runs()})
        if path == "/api/run":
            folder = site.folder(query)
            # Pictures too: jaxmlp eval writes them after eval.json, and the page shows
            # them once they are there.
            files = [folder / n for n in (CONFIG, SWEEP, METRICS, SUMMARY, EVAL, MODEL,
                                          *_PICTURES)]
            files += sorted((folder / MODELS).glob("*/*"))
            version = _stamp(*files)
            tag = {"ETag": f'"{version}"'}
            if self.headers.get("If-None-Match") == tag["ETag"]:  # unchanged: not read again
                return 304, "application/json", b"", tag
            return self._json({**_run_view(site.root, folder), "version": version,
                               "folder": str(site.shown / _rel(site.root, folder))}, tag)
        if path == "/api/model":
            folder = site.folder(query)
            model = _model_index(query)
            return self._json(_model_json(*site.model(folder, model)))
        if path.startswith("/files/"):
            return self._picture(path[len("/files/"):])
        if not path.startswith(("/api/", "/static/")):  # a mistyped page: the page says so
            return 404, "text/html; charset=utf-8", site.index, {}
        raise _HttpError(404, f"no page {path[:100]!r}")

    def _picture(self, rel):
        """A picture of a run folder: ``P/NAME`` or a sweep's ``P/models/I/NAME``."""
        folder_rel, _, name = rel.rpartition("/")
        if name not in _PICTURES:
            raise _HttpError(404, f"no picture {rel[:100]!r}")
        path = _inside(self.site.root, f"{folder_rel}/{name}" if folder_rel else name)
        if not path.is_file():
            raise _HttpError(404, f"no picture {rel[:100]!r}")
        return 200, "image/png", path.read_bytes(), {}

    def _post(self, path, query):
        if path != "/api/predict":
            raise _HttpError(404, f"nothing to POST to at {path[:100]!r}")
        # A JSON type: a page on another site cannot send it without asking first (CORS),
        # and this server never says yes.
        if (self.headers.get("Content-Type") or "").split(";")[0].strip().lower() != "application/json":
            raise _HttpError(415, "send the pixels as application/json")
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise _HttpError(411, "a POST needs a Content-Length")
        if int(length) > _MAX_BODY:
            self.close_connection = True
            left = int(length) if int(length) <= _DRAIN else 0
            while left > 0:  # read and dropped, so that the client sees the answer
                chunk = self.rfile.read(min(1 << 16, left))
                left = left - len(chunk) if chunk else 0  # b"": the client has gone
            raise _HttpError(413, f"request body of {int(length)} bytes: at most {_MAX_BODY}")
        body = self.rfile.read(int(length))
        folder = self.site.folder(query)
        return self._json(_predict_json(*self.site.model(folder, _model_index(query)), body))


def _error(e: Exception) -> bytes:
    return json.dumps({"error": str(e)}).encode()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True  # Ctrl-C does not wait for a browser's open connection

    def handle_error(self, request, client_address):
        """A browser that closes its connection early is no error; anything else is one
        line, never a traceback."""
        e = sys.exc_info()[1]
        if not isinstance(e, (ConnectionError, TimeoutError)):
            print(f"jaxmlp serve: {type(e).__name__}: {e}", file=sys.stderr)


class _Server6(_Server):
    address_family = socket.AF_INET6


def _make_server(root, host: str = "127.0.0.1", port: int = 8000) -> _Server:
    """A server of the runs under ``root`` on ``host:port`` (port 0: any free one), bound
    and ready: ``serve_forever()`` answers, ``server_address`` says where."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"no folder {root} (train a run first: jaxmlp train --out "
                         f"{root}/NAME)" if not root.exists() else f"{root} is not a folder")
    if not host:
        raise ValueError("--host must name an address (0.0.0.0 for every interface)")
    handler = type("Handler", (_Handler,), {"site": _Site(root.resolve(), root)})
    server = _Server6 if ":" in host else _Server
    try:
        return server((host, port), handler)
    except OSError as e:
        raise OSError(f"cannot serve on {host}:{port}: {e.strerror or e}"
                      + (" (another server there? choose another --port)"
                         if e.errno == 98 else "")) from None


def _url(server: _Server) -> str:
    host, port = server.server_address[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"
