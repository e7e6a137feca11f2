"""``jaxmlp serve`` without a browser: its JSON, its refusals, and that it writes nothing.

The page itself, drawn on in Chromium, is tests/test_browser.py."""
import base64
import dataclasses
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SERVED_ARCH, serving

from jaxmlp import ACTIVATIONS, load_model, load_run, parse_arch, predict
from jaxmlp._run import RunError, read_history
from jaxmlp.app._serve import _ASSETS, _MAX_BODY, make_server

WEB = Path(__file__).resolve().parents[1] / "jaxmlp" / "app" / "web"


@pytest.fixture(scope="module")
def site(served_runs):
    """``(root, port)`` of a server of the served runs, in a thread of this process."""
    with serving(served_runs[0]) as server:
        yield served_runs[0], server.server_address[1]


def request(port, method, path, body=None, headers=None):
    """``(status, headers, body)`` of one raw request: the path is sent as written
    (``..`` included), as a browser never would."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest(method, path, skip_accept_encoding=True, skip_host="Host" in (headers or {}))
    for k, v in {**({"Content-Length": str(len(body))} if body is not None else {}),
                 **(headers or {})}.items():
        conn.putheader(k, v)
    conn.endheaders()
    if body is not None:
        conn.send(body)
    r = conn.getresponse()
    out = r.status, dict(r.getheaders()), r.read()
    conn.close()
    return out


def get_json(port, path, **kw):
    status, _, body = request(port, "GET", path, **kw)
    assert status == 200, (status, body)
    return json.loads(body)


def post(port, path, obj=None, raw=None, kind="application/json"):
    body = raw if raw is not None else json.dumps(obj).encode()
    status, _, answer = request(port, "POST", path, body, {"Content-Type": kind})
    return status, json.loads(answer)


def test_runs_are_listed_newest_first_with_their_model_s_accuracies(site):
    # The accuracies of the model the folder holds (issue 26: not the best test figure of
    # any epoch, which chose by the test set): a run's last epoch, a sweep's best setting's
    # ensemble as summary.json names it.
    root, port = site
    runs = get_json(port, "/api/runs")["runs"]
    assert [r["path"] for r in runs] == ["grid/sweep", "one"]  # the sweep was trained last
    assert runs[0]["modified"] >= runs[1]["modified"]
    sweep, one = runs
    history = read_history(root / "one")
    assert one["kind"] == "run" and one["arch"] == SERVED_ARCH and one["epochs"] == 2
    assert (one["test_acc"], one["val_acc"]) == (history[-1]["test_acc"], history[-1]["val_acc"])
    best = json.loads((root / "grid" / "sweep" / "summary.json").read_text())["best"]
    assert sweep["kind"] == "sweep" and sweep["models"] == 4 and sweep["val_acc"] is None
    assert sweep["test_acc"] == best["ensemble_test_acc"]
    # docs/serve.md names every field a row has, and no other (it named two that were not).
    page = (Path(__file__).parents[1] / "docs" / "serve.md").read_text()
    row = re.search(r'`GET /api/runs` \| `\{"root", "runs": \[\{(.*?)\}\]\}`', page)[1]
    documented = set(re.findall(r'"(\w+)"', row))
    assert set(one) | {"models"} == documented and set(sweep) <= documented


def test_a_run_is_its_config_history_and_evaluation(site):
    root, port = site
    view = get_json(port, "/api/run?path=one")
    run = load_run(root / "one")
    assert view["kind"] == "run" and view["config"] == dataclasses.asdict(run.config)
    assert view["history"] == run.history and view["evaluation"] == run.evaluation
    assert view["pictures"] == ["curves.png", "confusion.png", "mistakes.png", "weights.png"]
    sweep = get_json(port, "/api/run?path=grid%2Fsweep")
    assert [(s["lr"], s["models"]) for s in sweep["settings"]] == [(0.05, [0, 1]), (0.1, [2, 3])]
    assert [m["seed"] for m in sweep["models"]] == [0, 1, 0, 1]
    assert sweep["history"] == read_history(root / "grid/sweep")
    assert sweep["summary"]["settings"][1]["lr"] == 0.1


def test_an_unchanged_run_answers_304(site):
    _, port = site
    _, headers, _ = request(port, "GET", "/api/run?path=one")
    tag = headers["ETag"]
    assert request(port, "GET", "/api/run?path=one", headers={"If-None-Match": tag})[0] == 304
    assert request(port, "GET", "/api/run?path=one", headers={"If-None-Match": '"x"'})[0] == 200


def test_the_weights_are_the_models_float32_arrays(site):
    root, port = site
    got = get_json(port, "/api/model?path=one")
    arch, params, info = load_model(root / "one" / "model.npz")
    assert got["arch"] == [{"units": u, "activation": a} for u, a in arch]
    assert got["digits"] is True and got["image_shape"] == [28, 28, 1]
    for layer, want in zip(got["layers"], params):
        w = np.frombuffer(base64.b64decode(layer["w"]), "<f4").reshape(layer["shape"])
        np.testing.assert_array_equal(w, want["w"])
        np.testing.assert_array_equal(np.frombuffer(base64.b64decode(layer["b"]), "<f4"), want["b"])
    model = get_json(port, "/api/model?path=grid/sweep&model=3")
    w = np.frombuffer(base64.b64decode(model["layers"][0]["w"]), "<f4").reshape(784, 16)
    np.testing.assert_array_equal(w, load_run(root / "grid/sweep", model=3).params[0]["w"])


@pytest.mark.parametrize("which,model", [("one", None), ("grid/sweep", 2)])
def test_the_predict_endpoint_is_jaxmlp_predict(site, which, model):
    root, port = site
    pixels = np.random.default_rng(1).integers(0, 256, 784)
    query = f"/api/predict?path={which}" + ("" if model is None else f"&model={model}")
    status, got = post(port, query, {"pixels": pixels.tolist()})
    assert status == 200, got
    run = load_run(root / which, model=model)
    want = predict(run.params, pixels.astype(np.uint8)[None], run.arch)[0]
    np.testing.assert_allclose(got["probs"], want, rtol=1e-6, atol=1e-9)
    assert got["top3"][0] == {"class": int(want.argmax()), "prob": got["probs"][int(want.argmax())]}


def link_out(tmp_path, target) -> Path:
    """A root whose ``escape`` is a symbolic link to ``target``, outside it."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "escape").symlink_to(target)
    return root


@pytest.mark.parametrize("path", [
    "/files/../../../../etc/passwd", "/files/%2e%2e/%2e%2e/etc/passwd", "/files//etc/passwd",
    "/files/one/../../one/curves.png", "/files/one/config.json", "/files/one/model.npz",
    "/api/run?path=..", "/api/run?path=/etc", "/api/run?path=one/../..", "/api/run?path=./one",
    "/api/run?path=one%00", "/api/run?path=nothing", "/static/../serve.py", "/etc/passwd",
    "/api/model?path=../one",
])
def test_nothing_outside_the_runs_is_served(site, path):
    status, _, body = request(site[1], "GET", path)
    assert status == 404, (path, status, body)
    assert b"passwd" not in body or b"no " in body  # the message, never the file


def test_a_link_out_of_the_root_is_refused(served_runs, tmp_path):
    root = link_out(tmp_path, served_runs[0] / "one")
    with serving(root) as server:
        port = server.server_address[1]
        assert get_json(port, "/api/runs")["runs"] == []  # links are not followed
        for path in ("/files/escape/curves.png", "/api/run?path=escape",
                     "/api/model?path=escape"):
            assert request(port, "GET", path)[0] == 404, path
        assert post(port, "/api/predict?path=escape", {"pixels": [0] * 784})[0] == 404


def test_a_run_folder_itself_can_be_served(served_runs):
    root = served_runs[0] / "one"
    with serving(root) as server:
        port = server.server_address[1]
        assert [r["path"] for r in get_json(port, "/api/runs")["runs"]] == ["."]
        assert get_json(port, "/api/run?path=.")["history"] == read_history(root)
        assert request(port, "GET", "/files/curves.png")[2] == (root / "curves.png").read_bytes()
        assert request(port, "GET", "/files/../one/curves.png")[0] == 404


def test_a_picture_of_a_run_is_served(site):
    root, port = site
    status, headers, body = request(port, "GET", "/files/one/confusion.png")
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert body == (root / "one" / "confusion.png").read_bytes()


@pytest.mark.parametrize("body,kind,status,message", [
    (b"x" * (_MAX_BODY + 1), "application/json", 413, "at most 65536"),
    (b"{", "application/json", 400, "not JSON"),
    (b"\xff\xfe", "application/json", 400, "not JSON"),
    (b"[" * 100_00 + b"]" * 100_00, "application/json", 400, "not JSON"),
    (b'{"pixels": [1, 2]}', "application/json", 400, "784 grey levels"),
    (json.dumps({"pixels": [256] * 784}).encode(), "application/json", 400, "0..255"),
    (json.dumps({"pixels": [0.5] * 784}).encode(), "application/json", 400, "integers"),
    (json.dumps({"pixels": [True] * 784}).encode(), "application/json", 400, "integers"),
    (json.dumps([0] * 784).encode(), "application/json", 400, '{"pixels"'),
    (json.dumps({"pixels": [0] * 784}).encode(), "text/plain", 415, "application/json"),
])
def test_a_bad_request_gets_one_clear_answer(site, body, kind, status, message, capfd):
    got_status, got = post(site[1], "/api/predict?path=one", raw=body, kind=kind)
    assert got_status == status and message in got["error"], got
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err


def test_requests_that_name_no_model_or_the_wrong_one(site):
    port = site[1]
    assert post(port, "/api/predict", {"pixels": [0] * 784}) == (
        400, {"error": "which run? add ?path=FOLDER (as /api/runs lists them)"})
    assert post(port, "/api/predict?path=grid/sweep", {"pixels": [0] * 784})[1]["error"] \
        .startswith("a sweep's folder holds many models")
    assert post(port, "/api/predict?path=one&model=0", {"pixels": [0] * 784})[0] == 400
    assert post(port, "/api/predict?path=grid/sweep&model=x", {"pixels": [0] * 784})[0] == 400
    status, got = post(port, "/api/predict?path=grid/sweep&model=9", {"pixels": [0] * 784})
    assert status == 409 and "holds models 0 to 3, not 9" in got["error"]
    assert post(port, "/api/runs", {})[0] == 404


def test_a_post_without_a_length_is_refused(site):
    with socket.create_connection(("127.0.0.1", site[1]), timeout=10) as s:
        s.sendall(b"POST /api/predict?path=one HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        assert s.recv(200).startswith(b"HTTP/1.1 411")


def _raw(port: int, request: bytes) -> bytes:
    """Everything the server answers to ``request``, sent as it is, until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
    return answer


def test_ambiguous_or_malformed_requests_get_a_400_with_a_status_line(site):
    # Found by a fresh-eyes test: two Content-Lengths were taken (the first), and a request
    # line too malformed to name its version got a bare JSON body, HTTP/0.9's answer.
    answer = _raw(site[1], b"POST /api/predict?path=one HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           b"Content-Type: application/json\r\nContent-Length: 2\r\n"
                           b"Content-Length: 5000\r\n\r\n{}")
    assert answer.startswith(b"HTTP/1.1 400 ") and answer.endswith(
        b'{"error": "a request has at most one Content-Length"}')
    # A raw UTF-8 "é" in the query is "é" again, as its %-escape is (it was echoed "Ã©").
    for path in ("/api/run?path=caf\u00e9".encode(), b"/api/run?path=caf%C3%A9"):
        answer = _raw(site[1], b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                               b"Connection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 404 ") and answer.endswith(
            b'{"error": "no run \'caf\\u00e9\' here"}'), answer[-80:]  # JSON's escape of é
    for line in (b"GARBAGE", b"GET / HTTP/9.9", b"GET / HTTP/x.y z"):
        answer = _raw(site[1], line + b"\r\n\r\n")
        assert re.match(rb"HTTP/1\.[01] (400|505) ", answer), (line, answer[:80])
        assert b"\r\n\r\n{\"error\": " in answer


def test_only_requests_addressed_to_this_server_are_answered(site):
    """DNS rebinding: a page on evil.example whose name now points at 127.0.0.1."""
    status, _, body = request(site[1], "GET", "/api/runs", headers={"Host": "evil.example"})
    assert status == 403 and b"evil.example" in body
    assert request(site[1], "GET", "/api/runs", headers={"Host": "localhost:1"})[0] == 200


def tree(root: Path) -> dict:
    return {p: (p.is_symlink(), p.stat(follow_symlinks=False).st_mtime_ns,
                p.stat(follow_symlinks=False).st_size) for p in root.rglob("*")}


def test_serving_writes_nothing(served_runs, tmp_path):
    root = served_runs[0]
    before = tree(root)
    with serving(root) as server:
        port = server.server_address[1]
        for path in ("/", "/api/runs", "/api/run?path=one", "/api/run?path=grid/sweep",
                     "/api/model?path=one", "/api/model?path=grid/sweep&model=1",
                     "/files/one/mistakes.png"):
            assert request(port, "GET", path)[0] == 200, path
        assert post(port, "/api/predict?path=one", {"pixels": [9] * 784})[0] == 200
    assert tree(root) == before
    assert not list(root.rglob(".lock"))  # a trainer's lock is never taken, nor made


def test_a_broken_run_is_named_in_its_row_and_page(served_runs, tmp_path, capfd):
    import shutil

    root = tmp_path / "runs"
    shutil.copytree(served_runs[0] / "one", root / "broken")
    with open(root / "broken" / "metrics.jsonl", "a") as f:
        f.write("not json\n")
    with serving(root) as server:
        port = server.server_address[1]
        row, = get_json(port, "/api/runs")["runs"]
        assert row["error"] == f"{root.resolve()}/broken/metrics.jsonl line 3 is not valid JSON " \
                               "(Expecting value)"
        status, _, body = request(port, "GET", "/api/run?path=broken")
        assert status == 409 and json.loads(body)["error"] == row["error"]
    out, err = capfd.readouterr()
    assert out + err == ""


def test_odd_run_files_are_named_never_waited_on(served_runs, tmp_path):
    """A FIFO planted as metrics.jsonl (reading it would block for good), and an eval.json
    that is JSON but not jaxmlp eval's: one line each, the rest of the page still served."""
    import shutil

    root = tmp_path / "runs"
    shutil.copytree(served_runs[0] / "one", root / "fifo")
    (root / "fifo" / "metrics.jsonl").unlink()
    os.mkfifo(root / "fifo" / "metrics.jsonl")
    shutil.copytree(served_runs[0] / "one", root / "odd-eval")
    (root / "odd-eval" / "eval.json").write_text('{"test_acc": 0.9}')
    with serving(root) as server:
        port = server.server_address[1]
        rows = {r["path"]: r for r in get_json(port, "/api/runs")["runs"]}
        assert rows["fifo"]["error"] == f"{root.resolve()}/fifo/metrics.jsonl is not a regular file"
        assert request(port, "GET", "/api/run?path=fifo")[0] == 409
        view = get_json(port, "/api/run?path=odd-eval")
        assert view["evaluation"] is None and view["history"] == read_history(root / "odd-eval")
        assert view["evaluation_error"].endswith("/odd-eval/eval.json is not jaxmlp eval's output "
                                                 "(needs test_acc, test_loss, per_class_acc, "
                                                 "confusion, mistakes): run jaxmlp eval again")
    # The check is jaxmlp._run's readers', so every command names it too.
    with pytest.raises(RunError, match="fifo/metrics.jsonl is not a regular file"):
        load_run(root / "fifo")


def test_the_weights_version_changes_when_the_run_saves_new_ones(served_runs, tmp_path):
    import shutil

    root = tmp_path / "runs"
    shutil.copytree(served_runs[0] / "one", root / "one")
    with serving(root) as server:
        port = server.server_address[1]
        first = get_json(port, "/api/model?path=one")["version"]
        assert post(port, "/api/predict?path=one", {"pixels": [0] * 784})[1]["version"] == first
        model = root / "one" / "model.npz"
        arrays = dict(np.load(model))
        arrays["params/0/b"] = arrays["params/0/b"] + 1  # as a trainer's next epoch would
        np.savez(root / "one" / "next.npz", **arrays)
        os.replace(root / "one" / "next.npz", model)
        second = get_json(port, "/api/model?path=one")
        assert second["version"] != first
        b = np.frombuffer(base64.b64decode(second["layers"][0]["b"]), "<f4")
        np.testing.assert_array_equal(b, arrays["params/0/b"])
        assert post(port, "/api/predict?path=one", {"pixels": [0] * 784})[1]["version"] == \
            second["version"]


def test_http_servers_own_refusals_are_one_json_line_too(site):
    port = site[1]
    status, headers, body = request(port, "PUT", "/api/runs", b"")
    assert status == 501 and json.loads(body) == {"error": "Unsupported method ('PUT')"}
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /a b HTTP/1.1\r\n\r\n")
        reply = b"".join(iter(lambda: s.recv(1000), b""))  # until the server closes
    assert reply.startswith(b"HTTP/1.1 400"), reply
    assert reply.endswith(b'{"error": "Bad request syntax (\'GET /a b HTTP/1.1\')"}'), reply
    status, headers, body = request(port, "GET", "/runs")  # a mistyped page: the page says so
    assert status == 404 and headers["Content-Type"].startswith("text/html")
    assert post(port, "/api/predict?path=one", {"pixels": [0] * 784},
                kind="Application/JSON; charset=utf-8")[0] == 200
    status, _, body = request(port, "GET", "/api/runs",
                              headers={"Host": "127.0.0.1", "host": "evil.example"})
    assert status == 400 and b"one Host header" in body


def test_the_page_ships_every_file_it_uses_and_fetches_nothing_from_elsewhere():
    index = (WEB / "index.html").read_text()
    used = set(re.findall(r'/static/([\w.]+)', index))
    for name in _ASSETS:
        text = (WEB / name).read_text()
        used |= set(re.findall(r'from "\./([\w.]+)"', text))
        # The only URL in the page's files is SVG's namespace, which is a name, not a fetch.
        assert re.findall(r"https?://[^\s\"'`]+", text.replace("http://www.w3.org/2000/svg", "")) == [], name
    assert used == set(_ASSETS)
    assert set(_ASSETS) <= {p.name for p in WEB.iterdir()}
    pyproject = (WEB.parents[2] / "pyproject.toml").read_text()
    assert re.search(r'^"jaxmlp.app" = \[.*"web/\*"', pyproject, re.M)  # shipped in the wheel too


def test_the_page_knows_every_activation():
    digit = (WEB / "digit.js").read_text()
    table = digit[digit.index("export const ACTIVATIONS"):]
    table = table[:table.index("};")]
    assert set(re.findall(r"^\s+(\w+):", table, re.M)) == set(ACTIVATIONS)
    assert {a for _, a in parse_arch(SERVED_ARCH)} == set(ACTIVATIONS)  # the browser tests' net


def serve(*args, env=None):
    return subprocess.Popen([sys.executable, "-m", "jaxmlp", "serve", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_the_command_serves_until_ctrl_c_then_exits_0_with_one_line(served_runs):
    proc = serve(served_runs[0], "--port", 0)
    line = proc.stdout.readline()
    url = re.fullmatch(r"serving the runs under (.+) at http://127\.0\.0\.1:(\d+)/ \(Ctrl-C to stop\)\n",
                       line)
    assert url and url[1] == str(served_runs[0]), line
    assert get_json(int(url[2]), "/api/runs")["runs"][1]["path"] == "one"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out, err) == (0, "jaxmlp serve: stopped\n", "")


def test_an_ipv6_host_is_served_and_an_empty_one_refused(served_runs):
    with pytest.raises(ValueError, match=r"--host must name an address \(0.0.0.0 for every"):
        make_server(served_runs[0], "", 0)
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError as e:  # a machine without IPv6 on loopback
        pytest.skip(f"no IPv6 loopback here: {e}")
    with serving(served_runs[0], "::1") as server:
        conn = http.client.HTTPConnection("::1", server.server_address[1], timeout=10)
        conn.request("GET", "/api/runs")
        assert conn.getresponse().status == 200


def test_the_command_refuses_a_missing_folder_and_a_taken_port(tmp_path, served_runs):
    proc = serve(tmp_path / "nothing")
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, out) == (2, "")
    assert err == f"jaxmlp serve: error: no folder {tmp_path}/nothing (train a run first: " \
                  f"jaxmlp train --out {tmp_path}/nothing/NAME)\n"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = serve(served_runs[0], "--port", port)
        out, err = proc.communicate(timeout=60)
    assert (proc.returncode, out) == (2, "")
    assert err == f"jaxmlp serve: error: cannot serve on 127.0.0.1:{port}: Address already in " \
                  "use (another server there? choose another --port)\n"


def copy_run(source: Path, to: Path) -> Path:
    import shutil

    shutil.copytree(source, to, symlinks=True)
    return to


def test_a_picture_is_a_png_reached_without_a_link(served_runs, tmp_path):
    """A picture is served only when it is a regular file, reached without a link, that
    starts as a PNG does: otherwise the 404 of a missing one, and it is not listed."""
    root = tmp_path / "runs"
    one = copy_run(served_runs[0] / "one", root / "one")
    other = copy_run(served_runs[0] / "one", root / "other")
    (other / "curves.png").unlink()
    (other / "curves.png").symlink_to(one / "model.npz")  # another run's weights, inside DIR
    (other / "confusion.png").unlink()
    os.link(one / "model.npz", other / "confusion.png")  # a hard link: regular, but no PNG
    (other / "mistakes.png").write_bytes(b"not a picture at all")
    (other / "weights.png").unlink()
    os.mkfifo(other / "weights.png")  # never waited on
    sweep = copy_run(served_runs[0] / "grid/sweep", root / "sweep")
    os.makedirs(root / "elsewhere" / "0")
    (root / "elsewhere" / "0" / "weights.png").write_bytes((one / "weights.png").read_bytes())
    (root / "elsewhere" / "0" / "eval.json").write_bytes((one / "eval.json").read_bytes())
    (sweep / "models").symlink_to(root / "elsewhere")  # a linked folder on the way
    (root / "alias").symlink_to(one)  # a run reached through a linked folder
    with serving(root) as server:
        port = server.server_address[1]
        status, headers, body = request(port, "GET", "/files/one/curves.png")
        assert (status, headers["Content-Type"], body) == (200, "image/png",
                                                           (one / "curves.png").read_bytes())
        for path in ("/files/other/curves.png", "/files/other/confusion.png",
                     "/files/other/mistakes.png", "/files/other/weights.png",
                     "/files/sweep/models/0/weights.png", "/files/alias/curves.png"):
            status, headers, body = request(port, "GET", path)
            assert status == 404 and headers["Content-Type"] == "application/json", path
            assert json.loads(body) == {"error": f"no picture {path[len('/files/'):]!r}"}
        assert get_json(port, "/api/run?path=other")["pictures"] == []
        view = get_json(port, "/api/run?path=sweep")
        assert all(p == [] for p in view["model_pictures"].values())
        assert request(port, "GET", "/api/run?path=alias")[0] == 404
        assert {r["path"] for r in get_json(port, "/api/runs")["runs"]} == {"sweep", "other", "one"}


def test_a_picture_larger_than_any_jaxmlp_draws_is_not_served(served_runs, monkeypatch):
    import jaxmlp.app._pages

    root = served_runs[0]
    size = (root / "one" / "weights.png").stat().st_size
    monkeypatch.setattr(jaxmlp.app._pages, "_MAX_PICTURE", size - 1)
    with serving(root) as server:
        port = server.server_address[1]
        assert request(port, "GET", "/files/one/weights.png")[0] == 404
        assert request(port, "GET", "/files/one/curves.png")[0] == 200  # smaller
        assert "weights.png" not in get_json(port, "/api/run?path=one")["pictures"]
    monkeypatch.setattr(jaxmlp.app._pages, "_MAX_PICTURE", size)
    with serving(root) as server:
        assert request(server.server_address[1], "GET", "/files/one/weights.png")[0] == 200


def test_a_model_index_is_ascii_digits(site):
    port = site[1]
    for value in ("%C2%B2", "%D9%A3", "1234567890", "-1", "+1", "1.0", "%201"):
        status, _, body = request(port, "GET", f"/api/model?path=grid/sweep&model={value}")
        assert status == 400, (value, body)
        assert json.loads(body)["error"].startswith("model must be a model's index (0, 1, ...)")
    assert get_json(port, "/api/model?path=grid/sweep&model=01")["arch"][0]["units"] == 16
    status, _, body = request(port, "POST", "/api/predict?path=one", b"{}",
                              {"Content-Type": "application/json", "Content-Length": "²"})
    assert (status, json.loads(body)) == (411, {"error": "a POST needs a Content-Length"})


def sweep_with_models(tmp_path, served_runs, models) -> Path:
    """A copy of the served sweep whose every metrics.jsonl line has ``"models": models``."""
    root = tmp_path / "runs"
    sweep = copy_run(served_runs[0] / "grid/sweep", root / "bad")
    lines = [json.loads(line) for line in (sweep / "metrics.jsonl").read_text().splitlines()]
    (sweep / "metrics.jsonl").write_text("".join(json.dumps({**r, "models": models}) + "\n"
                                                 for r in lines))
    copy_run(served_runs[0] / "one", root / "good")
    return root


@pytest.mark.parametrize("models", [{"a": 1}, [], [1, 2, 3, 4], "x"])
def test_a_malformed_sweep_costs_only_its_own_row(served_runs, tmp_path, models, capfd):
    root = sweep_with_models(tmp_path, served_runs, models)
    with serving(root) as server:
        rows = {r["path"]: r for r in get_json(server.server_address[1], "/api/runs")["runs"]}
    assert set(rows) == {"bad", "good"}
    assert rows["good"]["test_acc"] == read_history(root / "good")[-1]["test_acc"]
    assert "error" not in rows["good"] and f"{root.resolve()}/bad" in rows["bad"]["error"]
    assert "Traceback" not in "".join(capfd.readouterr())


@pytest.mark.parametrize("models", [{"a": 1}, [], [1, 2, 3, 4]])
def test_a_malformed_sweep_is_a_409_naming_metrics_jsonl(served_runs, tmp_path, models):
    """Needs jaxmlp._run.read_history to check a sweep's ``models`` (one dict per model)."""
    root = sweep_with_models(tmp_path, served_runs, models)
    where = f"{root.resolve()}/bad/metrics.jsonl line 1"
    with serving(root) as server:
        port = server.server_address[1]
        row = {r["path"]: r for r in get_json(port, "/api/runs")["runs"]}["bad"]
        assert row["error"].startswith(where), row
        for method, path in [("GET", "/api/run?path=bad"), ("GET", "/api/model?path=bad&model=0"),
                             ("POST", "/api/predict?path=bad&model=0")]:
            body = json.dumps({"pixels": [0] * 784}).encode() if method == "POST" else None
            status, _, answer = request(port, method, path, body,
                                        {"Content-Type": "application/json"})
            assert status == 409 and json.loads(answer)["error"].startswith(where), (path, answer)


def test_an_unforeseen_error_in_one_run_is_its_row_and_one_console_line(served_runs, tmp_path,
                                                                         monkeypatch, capfd):
    import jaxmlp.app._pages

    root = tmp_path / "runs"
    copy_run(served_runs[0] / "one", root / "good")
    copy_run(served_runs[0] / "one", root / "odd")
    read = jaxmlp.app._pages.read_history

    def history(folder):
        if Path(folder).name == "odd":
            raise KeyError("models")  # as a reader that missed a case would
        return read(folder)

    monkeypatch.setattr(jaxmlp.app._pages, "read_history", history)
    with serving(root) as server:
        port = server.server_address[1]
        for _ in range(3):  # read once: the row is kept until the run's files change
            rows = {r["path"]: r for r in get_json(port, "/api/runs")["runs"]}
    assert rows["odd"]["error"] == (f"cannot show the run in {root.resolve()}/odd (KeyError; "
                                    "jaxmlp serve's console says more)")
    assert rows["good"]["epochs"] == 2 and "error" not in rows["good"]
    out, err = capfd.readouterr()
    assert (out, err) == ("", f"jaxmlp serve: {root.resolve()}/odd: KeyError: 'models'\n")


GOOD_EVAL = {"test_acc": 0.5, "test_loss": 1.5, "per_class_acc": [0.5, None],
             "confusion": [[1, 1], [0, 0]], "mistakes": [{"index": 3, "label": 0, "predicted": 1,
                                                          "confidence": 0.9}]}


@pytest.mark.parametrize("change", [
    {"mistakes": [1, "x", None]}, {"mistakes": [{"index": 3, "label": 0, "predicted": 1}]},
    {"mistakes": [{"index": "3", "label": 0, "predicted": 1, "confidence": 0.9}]},
    {"per_class_acc": ["0.5", "x"]}, {"per_class_acc": [0.5]}, {"confusion": [["a", "b"], [0, 0]]},
    {"confusion": [[1, 1], 2]}, {"confusion": [[1, -1], [0, 0]]}, {"confusion": [[1], [0]]},
    {"confusion": [[True, 1], [0, 0]]}, {"test_acc": float("nan")}, {"test_acc": "0.9"},
    {"test_acc": True}, {"test_acc": 7}, {"test_loss": float("inf")}, {"test_loss": None},
])
def test_an_eval_json_of_the_right_keys_but_wrong_values_is_named(served_runs, tmp_path, change):
    root = tmp_path / "runs"
    run = copy_run(served_runs[0] / "one", root / "run")
    (run / "eval.json").write_text(json.dumps(GOOD_EVAL))
    with serving(root) as server:
        port = server.server_address[1]
        assert get_json(port, "/api/run?path=run")["evaluation"] == GOOD_EVAL
        (run / "eval.json").write_text(json.dumps({**GOOD_EVAL, **change}))
        view = get_json(port, "/api/run?path=run")
    assert view["evaluation"] is None and view["history"] == read_history(run)
    assert view["evaluation_error"] == (f"{root.resolve()}/run/eval.json is not jaxmlp eval's "
                                        "output (needs test_acc, test_loss, per_class_acc, "
                                        "confusion, mistakes): run jaxmlp eval again")


def test_a_nan_in_a_run_file_is_sent_as_null(served_runs, tmp_path):
    """JSON has no NaN, and a browser's JSON.parse refuses Python's: the page gets null
    (in a field the reader does not hold to numbers; a NaN metric is a 409 naming the line)."""
    root = tmp_path / "runs"
    run = copy_run(served_runs[0] / "one", root / "run")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines[0] = lines[0].replace('"epoch_seconds": ', '"epoch_seconds": NaN, "was": ', 1)
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    bad = copy_run(served_runs[0] / "one", root / "bad")
    (bad / "metrics.jsonl").write_text(lines[0].replace('"test_acc": ', '"test_acc": NaN, "x": ', 1))
    with serving(root) as server:
        port = server.server_address[1]
        _, _, body = request(port, "GET", "/api/run?path=run")
        rows = {r["path"]: r for r in get_json(port, "/api/runs")["runs"]}
        status, _, refused = request(port, "GET", "/api/run?path=bad")
    assert status == 409 and "bad/metrics.jsonl line 1 is not an epoch record" in \
        json.loads(refused)["error"]
    row = rows["run"]
    assert "bad/metrics.jsonl line 1" in rows["bad"]["error"]

    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    view = json.loads(body, parse_constant=refuse)
    assert view["history"][0]["epoch_seconds"] is None
    assert view["history"][1]["test_acc"] == read_history(run)[1]["test_acc"]
    assert row["test_acc"] == view["history"][-1]["test_acc"]


def test_a_burst_of_300_requests_is_answered_without_a_reset(site):
    """http.server's listen backlog of 5 reset tens of 300 simultaneous connections."""
    import collections
    import threading
    from concurrent.futures import ThreadPoolExecutor

    port, start = site[1], threading.Barrier(300)

    def one(_):
        start.wait()
        try:
            status, _, body = request(port, "GET", "/api/runs")
            return status if json.loads(body)["runs"][1]["path"] == "one" else body
        except OSError as e:
            return type(e).__name__

    with ThreadPoolExecutor(300) as pool:
        answers = list(pool.map(one, range(300)))
    assert answers == [200] * 300, collections.Counter(map(str, answers))


def test_handler_threads_are_bounded_and_the_waiting_are_served(served_runs, monkeypatch):
    """Connections past the pool wait in the backlog, never a thread each, and are answered
    once a handler is free (here when the idle ones reach the deadline)."""
    import threading
    import time

    import jaxmlp.app._serve

    monkeypatch.setattr(jaxmlp.app._serve, "_THREADS", 4)
    monkeypatch.setattr(jaxmlp.app._serve, "_DEADLINE", 1.0)
    with serving(served_runs[0]) as server:
        port = server.server_address[1]
        before = threading.active_count()
        idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(12)]
        try:
            time.sleep(0.5)
            assert threading.active_count() - before <= 4
            start = time.monotonic()
            assert get_json(port, "/api/runs")["runs"][1]["path"] == "one"
            assert time.monotonic() - start < 10  # three rounds of idle ones, 1 s each
        finally:
            for s in idle:
                s.close()


def test_a_client_trickling_its_request_is_dropped_at_the_deadline(served_runs, monkeypatch):
    """One header byte every 0.2 s never lets a per-read timeout fire; the deadline (patched
    to 1 s here) counts from the request's start. An idle kept-alive connection closes too."""
    import time

    import jaxmlp.app._serve

    monkeypatch.setattr(jaxmlp.app._serve, "_DEADLINE", 1.0)
    with serving(served_runs[0]) as server:
        port = server.server_address[1]
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            start = time.monotonic()
            s.sendall(b"GET /api/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            closed = False
            while not closed and time.monotonic() - start < 6:
                try:
                    s.sendall(b"x")
                    closed = s.recv(100) == b""  # the server hung up, answering nothing
                except TimeoutError:  # still open: the next byte
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
            assert closed and 0.9 < time.monotonic() - start < 5
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/api/runs")
        assert conn.getresponse().read() and conn.sock is not None  # kept alive
        start = time.monotonic()
        assert conn.sock.recv(1) == b""  # closed by the server, idle
        assert 0.5 < time.monotonic() - start < 5
        conn.close()


def test_a_body_that_trickles_past_the_deadline_gets_408(served_runs, monkeypatch):
    import time

    import jaxmlp.app._serve

    monkeypatch.setattr(jaxmlp.app._serve, "_DEADLINE", 1.0)
    with serving(served_runs[0]) as server:
        with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=5) as s:
            s.sendall(b"POST /api/predict?path=one HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
            time.sleep(1.5)
            reply = b"".join(iter(lambda: s.recv(1000), b""))
    assert reply.startswith(b"HTTP/1.1 408"), reply
    assert reply.endswith(b'{"error": "a request takes at most 1 s to arrive"}')


def test_run_files_that_are_links_are_named_never_shown(served_runs, tmp_path):
    """Needs jaxmlp._run's readers to refuse a run file that is a link (or reached through a
    linked folder below the run folder): 409 naming the file, never what it holds."""
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "keys.json").write_text(json.dumps({"api_key": "TOPSECRET", "arch": "TOPSECRET"}))
    (secret / "keys.jsonl").write_text(json.dumps({"epoch": 1, "step": 1, "train_loss": 1,
                                                   "train_acc": 1, "test_loss": 1, "test_acc": 1,
                                                   "TOPSECRET": 1}) + "\n")
    root = tmp_path / "runs"
    for name, target in [("config.json", "keys.json"), ("metrics.jsonl", "keys.jsonl"),
                         ("model.npz", "keys.json")]:
        run = copy_run(served_runs[0] / "one", root / name.replace(".", "-"))
        (run / name).unlink()
        (run / name).symlink_to(secret / target)
    run = copy_run(served_runs[0] / "one", root / "eval-json")
    (run / "eval.json").unlink()
    (run / "eval.json").symlink_to(secret / "keys.json")
    sweep = copy_run(served_runs[0] / "grid/sweep", root / "sweep")
    os.makedirs(secret / "models" / "0")
    (secret / "models" / "0" / "eval.json").write_text(json.dumps({**GOOD_EVAL, "x": "TOPSECRET"}))
    (sweep / "models").symlink_to(secret / "models")
    with serving(root) as server:
        port = server.server_address[1]
        rows = {r["path"]: r for r in get_json(port, "/api/runs")["runs"]}
        for name, path in [("config.json", "/api/run?path=config-json"),
                           ("metrics.jsonl", "/api/run?path=metrics-jsonl"),
                           ("model.npz", "/api/model?path=model-npz")]:
            status, _, body = request(port, "GET", path)
            assert status == 409 and f"{root.resolve()}/{name.replace('.', '-')}/{name}" in \
                json.loads(body)["error"], (path, body)
            assert b"TOPSECRET" not in body
        assert "error" in rows["config-json"] and "error" in rows["metrics-jsonl"]
        # The weights are read with the run's settings and records (load_run): a run that
        # /api/run refuses is refused by /api/model and /api/predict too.
        pixels = json.dumps({"pixels": [0] * 784}).encode()
        for folder in ("config-json", "metrics-jsonl"):
            name = folder.replace("-", ".")
            for method, path, body in [("GET", f"/api/model?path={folder}", None),
                                       ("POST", f"/api/predict?path={folder}", pixels)]:
                status, _, answer = request(port, method, path, body,
                                            {"Content-Type": "application/json"})
                assert status == 409 and f"{folder}/{name} is a symbolic link" in \
                    json.loads(answer)["error"], (path, answer)
        view = get_json(port, "/api/run?path=eval-json")
        assert view["evaluation"] is None and "eval-json/eval.json" in view["evaluation_error"]
        view = get_json(port, "/api/run?path=sweep")
        assert view["evaluations"] == {"0": None}
        assert view["evaluation_errors"]["0"].startswith(f"{root.resolve()}/sweep/models ")
        _, _, body = request(port, "GET", "/api/runs")
        assert b"TOPSECRET" not in body
