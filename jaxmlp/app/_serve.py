"""``jaxmlp serve``: a local web page of the runs under a folder, and a canvas to draw on.

The page (``jaxmlp/app/web/``: plain JavaScript, no library, nothing fetched from elsewhere)
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
(through ``jaxmlp._run``, and never its lock, so a trainer starting on a served folder is
never refused), serves only the pictures of run folders under the root, and only PNG files
reached without a link (a ``..``, an absolute path, a link anywhere on the way, or a
picture that is not a PNG is a 404), refuses request bodies over ``_MAX_BODY`` (413),
answers bad JSON with 400 and a message, a malformed run with 409 naming its file, and
prints no tracebacks. Its capacity is bounded: ``_THREADS`` handler threads, a listen
backlog of ``_BACKLOG`` for the connections waiting for one, and ``_DEADLINE`` seconds for
a request to arrive.
"""
import http.server
import io
import json
import math
import re
import socket
import sys
import threading
import time
import urllib.parse
from importlib import resources
from pathlib import Path

from jaxmlp.app._pages import (PICTURES, BadRequest, describe_run, find_runs, model_json, read_png,
                           predict_json, page_name, run_view, stamp_of, is_there)
from jaxmlp._run import (CHECKPOINT, CONFIG, EVAL, METRICS, MODEL, MODELS, SUMMARY, SWEEP,
                        RunError, is_sweep, load_run)

_MAX_BODY = 64 * 1024  # a 28×28 image as JSON is ~3 KB; a 32×32×3 one ~12 KB
_DRAIN = 8 << 20  # a larger body is refused unread: the client may then miss the 413
# A page open on the runs polls every second over a few keep-alive connections; a burst of a
# few hundred (several pages, a script) waits in the kernel's backlog for one of the handler
# threads instead of being reset (http.server's default backlog is 5) or starting a thread
# each (a thread per connection has no bound).
_BACKLOG = 1024
_THREADS = 64
# Seconds a request's line, headers and body have to arrive, from when the server starts
# waiting for it; an idle keep-alive connection is closed after as long. A socket timeout
# alone restarts at every byte: a client sending one byte every 20 s would hold a thread for ever.
_DEADLINE = 10.0
_ASSETS = {**{f"{m}.js": "text/javascript" for m in ("app", "dom", "plot", "draw", "digit")},
           "style.css": "text/css", "favicon.svg": "image/svg+xml"}
_PAGES = ("/", "/run", "/draw", "/compare")  # each is index.html; app.js draws the page
# The page's own files only: no inline script, nothing from another origin.
_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


class _HttpError(Exception):
    """An answer other than 200: its status and the one line that says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _inside(root: Path, rel: str) -> Path:
    """``root/rel`` when it names something inside ``root`` (``"."``: the root) reached
    without a link: no part of ``rel`` may be ``..``, ``.``, empty or a symbolic link (the
    runs page lists no folder behind a link either). Else a 404, with no hint of what is there."""
    parts = rel.split("/")
    if rel != "." and (rel.startswith("/") or "\\" in rel or "\0" in rel
                       or any(p in ("", ".", "..") for p in parts)):
        raise _HttpError(404, f"no run {rel!r} here")
    path = root
    for part in parts if rel != "." else ():
        path = path / part
        if path.is_symlink():
            raise _HttpError(404, f"no run {rel!r} here")
    if not path.exists():
        raise _HttpError(404, f"no run {rel!r} here")
    return path


def _model_index(query: dict) -> int | None:
    value = query.get("model")
    if value is None:
        return None
    # ASCII digits only: str.isdigit() also takes "²", which int() then refuses.
    if not re.fullmatch(r"[0-9]{1,9}", value):
        raise _HttpError(400, f"model must be a model's index (0, 1, ...), got {value[:20]!r}")
    return int(value)


class _Site:
    """What the server knows: its root, the page's files, and the models it has loaded."""

    def __init__(self, root: Path, shown: Path):
        self.root, self.shown = root, shown  # resolved; as the user named it
        web = resources.files("jaxmlp.app") / "web"
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
        # A link named config.json still makes a run: jaxmlp._run's reader then refuses it (409).
        if not (folder.is_dir() and (is_there(folder / CONFIG) or is_sweep(folder))):
            raise _HttpError(404, f"no run {rel!r} here")
        return folder

    def runs(self) -> list[dict]:
        """Every run's row, newest first; a row is read again only when its files change
        (the page asks every 2 s)."""
        rows = []
        for folder in find_runs(self.root):
            stamp = stamp_of(*(folder / n for n in (CONFIG, SWEEP, METRICS)))
            with self._lock:
                cached = self._rows.get(folder)
            if not cached or cached[0] != stamp:
                cached = stamp, describe_run(self.root, folder)
                with self._lock:
                    self._rows[folder] = cached
            rows.append(cached[1])
        return sorted(rows, key=lambda r: -r["modified"])

    def model(self, folder: Path, model: int | None):
        """``(arch, params, info, version)`` of the run in ``folder`` (model ``model`` of a
        sweep); ``version`` changes whenever the run saves new weights."""
        sweep = is_sweep(folder)
        if sweep != (model is not None):
            raise _HttpError(400, "a sweep's folder holds many models: add &model=I" if sweep
                             else "a single run holds one model: drop model=")
        # Every file the model is read with: the weights, and the settings and records that
        # load_run holds them to (a run /api/run refuses is refused here too, 409).
        stamp = stamp_of(*(folder / n for n in ((CHECKPOINT, SWEEP, METRICS) if sweep
                                              else (MODEL, CONFIG, METRICS))))
        with self._lock:
            cached = self._models.get((folder, model))
        if cached and cached[0] == stamp:
            return (*cached[1], stamp)
        run = load_run(folder, model=model)
        loaded = (run.arch, run.params, run.info)
        with self._lock:
            self._models[(folder, model)] = (stamp, loaded)
        return (*loaded, stamp)


class _DeadlineReader(io.RawIOBase):
    """A connection's bytes as they arrive, each read waiting only for what is left before
    its handler's ``deadline``: a client trickling its request is dropped when it passes
    (``TimeoutError``), however often it sends a byte."""

    def __init__(self, handler: "_Handler"):
        self.handler = handler

    def readable(self):
        return True

    def readinto(self, buffer):
        late = TimeoutError(f"a request takes at most {_DEADLINE:g} s to arrive")
        left = self.handler.deadline - time.monotonic()
        if left <= 0:
            raise late
        self.handler.connection.settimeout(left)
        try:
            return self.handler.connection.recv_into(buffer)
        except TimeoutError:
            raise late from None


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the page polls every second
    # A request line too malformed to name its version is answered with a status line and
    # headers all the same: HTTP/0.9's bare body would leave the client without the 400.
    default_request_version = "HTTP/1.0"
    timeout = 30  # seconds an answer may take to be sent to a client that reads it slowly
    server_version = "jaxmlp"
    site: _Site  # set on the subclass make_server makes
    deadline = 0.0  # time.monotonic() by which the request being read must have arrived

    def log_message(self, format, *args):  # quiet: a request is no news
        pass

    def setup(self):
        super().setup()
        self.rfile.close()  # http.server's reader waits `timeout` per read: one with a deadline
        self.rfile = io.BufferedReader(_DeadlineReader(self))

    def handle_one_request(self):
        # Each request, and the wait for it on a kept-alive connection, has its own deadline.
        self.deadline = time.monotonic() + _DEADLINE
        super().handle_one_request()

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
            # http.server reads the request line as latin-1: raw UTF-8 bytes (a client that
            # sent "é" unescaped) are decoded again as UTF-8, as %-escapes are.
            url = urllib.parse.urlsplit(
                self.path.encode("latin-1", "replace").decode("utf-8", "replace"))
            query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
            status, kind, body, extra = route(urllib.parse.unquote(url.path), query)
        except _HttpError as e:
            status, kind, body, extra = e.status, "application/json", _error(e), {}
        except BadRequest as e:
            status, kind, body, extra = 400, "application/json", _error(e), {}
        except RunError as e:  # a run file that cannot be read: the page says which
            status, kind, body, extra = 409, "application/json", _error(e), {}
        except TimeoutError as e:  # a body that did not arrive in time (_DeadlineReader)
            self.close_connection = True
            status, kind, body, extra = 408, "application/json", _error(e), {}
        except Exception as e:  # a bug: one line here, a message in the page
            print(f"jaxmlp serve: {self.command} {self.path[:200]}: {type(e).__name__}: {e}",
                  file=sys.stderr)
            status, kind, body, extra = 500, "application/json", _error(e), {}
        self._send(status, kind, body, extra, head)

    def _send(self, status, kind, body, extra, head=False):
        # Reads left the socket with what remained of their deadline: answers get `timeout`.
        self.connection.settimeout(self.timeout)
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
        try:
            body = json.dumps(obj, allow_nan=False)
        except ValueError:  # a NaN a run file held: JSON has none, and a browser refuses it
            body = json.dumps(_finite(obj))
        return 200, "application/json", body.encode(), extra or {}

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
                                          *PICTURES)]
            if not (folder / MODELS).is_symlink():  # a linked models/ is not looked into
                files += sorted((folder / MODELS).glob("*/*"))
            version = stamp_of(*files)
            tag = {"ETag": f'"{version}"'}
            if self.headers.get("If-None-Match") == tag["ETag"]:  # unchanged: not read again
                return 304, "application/json", b"", tag
            return self._json({**run_view(site.root, folder), "version": version,
                               "folder": str(site.shown / page_name(site.root, folder))}, tag)
        if path == "/api/model":
            folder = site.folder(query)
            model = _model_index(query)
            return self._json(model_json(*site.model(folder, model)))
        if path.startswith("/files/"):
            return self._picture(path[len("/files/"):])
        if not path.startswith(("/api/", "/static/")):  # a mistyped page: the page says so
            return 404, "text/html; charset=utf-8", site.index, {}
        raise _HttpError(404, f"no page {path[:100]!r}")

    def _picture(self, rel):
        """A picture of a run folder: ``P/NAME`` or a sweep's ``P/models/I/NAME``; only a
        regular file, reached without a link, that is a PNG (else the 404 of a missing one)."""
        folder_rel, _, name = rel.rpartition("/")
        if name not in PICTURES:
            raise _HttpError(404, f"no picture {rel[:100]!r}")
        try:
            path = _inside(self.site.root, f"{folder_rel}/{name}" if folder_rel else name)
        except _HttpError:
            raise _HttpError(404, f"no picture {rel[:100]!r}") from None
        data = read_png(self.site.root, path)
        if data is None:
            raise _HttpError(404, f"no picture {rel[:100]!r}")
        return 200, "image/png", data, {}

    def _post(self, path, query):
        if path != "/api/predict":
            raise _HttpError(404, f"nothing to POST to at {path[:100]!r}")
        # A JSON type: a page on another site cannot send it without asking first (CORS),
        # and this server never says yes.
        kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if kind != "application/json":
            raise _HttpError(415, "send the pixels as application/json")
        if len(self.headers.get_all("Content-Length") or ()) > 1:  # which one? (RFC 9112 6.3)
            self.close_connection = True  # its body, of unknown length, is never read
            raise _HttpError(400, "a request has at most one Content-Length")
        length = self.headers.get("Content-Length")
        if length is None or not re.fullmatch(r"[0-9]{1,18}", length):  # ASCII: not "²"
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
        return self._json(predict_json(*self.site.model(folder, _model_index(query)), body))


def _error(e: Exception) -> bytes:
    return json.dumps({"error": str(e)}).encode()


def _finite(obj):
    """``obj`` with every NaN or infinity as None (null), the rest as it is."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


class _Server(http.server.ThreadingHTTPServer):
    # Ctrl-C does not wait for a browser's open connection: its thread is not joined either.
    daemon_threads, block_on_close = True, False
    request_queue_size = _BACKLOG  # listen()'s backlog (the kernel may cap it: somaxconn)

    def __init__(self, *args, **kwargs):
        self._slots = threading.BoundedSemaphore(_THREADS)  # read now: tests lower it
        self._stopping = False
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address):
        """A handler thread for the connection once fewer than ``_THREADS`` run; meanwhile
        this (accepting) thread waits, and new connections wait in the listen backlog."""
        while not self._slots.acquire(timeout=0.2):
            if self._stopping:
                self.shutdown_request(request)
                return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started: its slot is free again
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def shutdown(self):
        self._stopping = True  # an accept loop waiting for a slot gives up
        super().shutdown()

    def handle_error(self, request, client_address):
        """A browser that closes its connection early is no error; anything else is one
        line, never a traceback."""
        e = sys.exc_info()[1]
        if not isinstance(e, (ConnectionError, TimeoutError)):
            print(f"jaxmlp serve: {type(e).__name__}: {e}", file=sys.stderr)


class _Server6(_Server):
    address_family = socket.AF_INET6


def make_server(root, host: str = "127.0.0.1", port: int = 8000) -> _Server:
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


def url_of(server: _Server) -> str:
    host, port = str(server.server_address[0]), server.server_address[1]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"
