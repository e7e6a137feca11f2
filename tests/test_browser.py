"""``jaxmlp serve``'s page in a real browser: headless Chromium (Debian's ``chromium``)
driven by Playwright. A digit drawn with the mouse gets the answer ``jaxmlp.predict`` gives
(1e-4), from the 28×28 input Python's own preparation makes of the drawing; a run page
gains a point while the run trains; a sweep's page draws its models and bands; hostile
requests from the page are refused. Each test saves a screenshot in its temporary folder.

Without Chromium or Playwright these tests skip with the reason, except under CI=true,
where they fail: ``make test`` installs both (the Makefile's ``browser`` target).
"""
import base64
import dataclasses
import os
import shutil

import numpy as np
import pytest
from conftest import SERVED_ARCH, serving

from jaxmlp import forward_layers, load_run, predict, summary, train_and_evaluate
from jaxmlp._predict import _load_image

# As Playwright's own tests start it in a container; without the background-networking
# flags Chromium keeps trying to reach Google's servers, which this machine's closed
# network refuses, many connections at a time.
_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-dev-shm-usage"]


def _chromium():
    """The Chromium to drive, or the reason there is none."""
    import importlib.util

    if importlib.util.find_spec("playwright") is None:
        return None, "Playwright is not installed (pip install playwright; make test does)"
    for exe in (os.environ.get("JAXMLP_CHROMIUM"), shutil.which("chromium"),
                shutil.which("chromium-browser")):
        if exe and os.path.exists(exe):
            return exe, None
    return None, "no Chromium to drive (Debian: apt-get install chromium; make test does)"


@pytest.fixture(scope="module")
def browser():
    exe, reason = _chromium()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=_ARGS)
        yield b
        b.close()


def address(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(scope="module")
def site(served_runs):
    with serving(served_runs[0]) as server:
        yield address(server)


@pytest.fixture
def page(browser, tmp_path):
    """A fresh page; any script error or console error fails the test."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    p = context.new_page()
    errors = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    p.errors = errors
    yield p
    context.close()


def shot(page, tmp_path, name):
    page.screenshot(path=tmp_path / f"{name}.png", full_page=True)


def stroke(page, points):
    """One mouse stroke on the drawing canvas through ``points`` (canvas pixels)."""
    box = page.locator("#pad").bounding_box()
    scale = box["width"] / 280
    page.mouse.move(box["x"] + points[0][0] * scale, box["y"] + points[0][1] * scale)
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=6)
    page.mouse.up()


def answer(page):
    """The page's state once Python's check of the last stroke is in."""
    page.wait_for_selector("#python[data-state=agree], #python[data-state=differ], "
                           "#python[data-state=error]", timeout=30_000)
    state = page.evaluate("({...window.jaxmlpDraw, png: window.jaxmlpDraw.canvasPNG()})")
    state["python_text"] = page.inner_text("#python")
    return state


def check_against_python(state, run, tmp_path):
    """The page's input is Python's preparation of the drawing; its probabilities and hidden
    activations are jaxmlp's for that input."""
    png = tmp_path / "drawing.png"
    png.write_bytes(base64.b64decode(state["png"].split(",", 1)[1]))
    pixels = np.asarray(state["pixels"], np.uint8)
    prepared = _load_image(png)  # jaxmlp predict's preparation of the same drawing
    assert np.abs(pixels.astype(int) - prepared).max() <= 1  # Pillow's float32 resize, in JS
    assert (pixels != prepared).sum() <= 3, np.nonzero(pixels != prepared)
    want = predict(run.params, pixels[None], run.arch)[0]
    np.testing.assert_allclose(state["probs"], want, atol=1e-4, rtol=0)
    np.testing.assert_allclose(state["python"], want, atol=1e-6, rtol=0)
    assert state["maxDiff"] <= 1e-4 and "(agrees)" in state["python_text"]
    x = pixels[None].astype(np.float32) / 255
    for got, (_, a) in zip(state["layers"], forward_layers(run.params, x, run.arch)):
        np.testing.assert_allclose(got, np.asarray(a)[0], atol=1e-4, rtol=1e-4)


def test_a_drawn_digit_gets_jaxmlp_predicts_answer(page, site, served_runs, tmp_path):
    page.goto(f"{site}/draw?path=one")
    page.wait_for_selector("#pad")
    assert page.get_attribute("#answer", "data-state") == "empty"  # nothing drawn yet
    stroke(page, [(70, 50), (200, 50), (120, 240)])  # a 7
    first = answer(page)
    run = load_run(served_runs[0] / "one")
    check_against_python(first, run, tmp_path)
    shot(page, tmp_path, "draw-7")
    stroke(page, [(100, 150), (210, 150)])  # its bar: the answer follows the drawing
    page.wait_for_function("() => window.jaxmlpDraw.strokes === 2 && window.jaxmlpDraw.maxDiff !== null")
    second = answer(page)
    assert second["pixels"] != first["pixels"]
    check_against_python(second, run, tmp_path)
    top = [int(li.split(":")[0]) for li in page.locator(".top3 li").all_inner_texts()]
    assert top == list(np.argsort(-np.asarray(second["probs"]), kind="stable")[:3])
    page.click("#clear")
    page.wait_for_selector("#answer[data-state=empty]")
    assert page.inner_text("#python") == "Python's check comes when a stroke ends."
    shot(page, tmp_path, "draw-cleared")
    box = page.locator("#pad").bounding_box()
    page.mouse.click(box["x"] + 140, box["y"] + 140)  # a tap after clear: white ink, a dot
    dot = answer(page)
    assert dot["strokes"] == 3 and sum(dot["pixels"]) > 0
    check_against_python(dot, run, tmp_path)
    assert page.errors == []


def images_for_the_preparation():
    """Grey images that take every branch of jaxmlp predict's preparation: ink on black,
    dark ink on light paper (inverted), an uneven background, a table edge at the border,
    specks, a faint stroke beside a bright one, a 28×28 image (taken as it is), a blank one
    and one without contrast (both refused)."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(0)

    def digit(size, strokes, ink=255, paper=0, width=6):
        image = Image.new("L", size, paper)
        draw = ImageDraw.Draw(image)
        for points in strokes:
            draw.line(points, fill=ink, width=width, joint="curve")
        return image

    seven = [[(30, 30), (90, 30), (55, 110)]]
    cases = {
        "white on black": digit((120, 140), seven),
        "dark on light": digit((120, 140), seven, ink=20, paper=235),
        "blurred, uneven paper": Image.fromarray(np.clip(np.asarray(digit(
            (150, 120), [[(40, 20), (40, 100)], [(40, 20), (90, 60)]], ink=200, paper=0),
            float) + np.linspace(0, 60, 150)[None, :], 0, 255).astype(np.uint8)).filter(
            ImageFilter.GaussianBlur(2)),
        "table edge": digit((130, 130), [[(0, 120), (129, 120)], *seven], width=8),
        "specks": Image.fromarray(np.maximum(np.asarray(digit((100, 100), seven)),
                                             (rng.random((100, 100)) > 0.995) * 255).astype(np.uint8)),
        "faint beside bright": Image.fromarray(np.maximum(
            np.asarray(digit((140, 100), [[(20, 20), (20, 80)]])),
            np.asarray(digit((140, 100), [[(70, 20), (120, 80)]], ink=90)))),
        "28x28": Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)),
        "blank": Image.new("L", (60, 60), 128),
        "no contrast": Image.fromarray((rng.random((50, 50)) * 40 + 100).astype(np.uint8)),
    }
    return {name: np.asarray(image, np.uint8) for name, image in cases.items()}


def test_the_pages_preparation_is_jaxmlp_predicts(page, site, tmp_path):
    """digit.js's prepareDigit against predict.py's _load_image, image by image."""
    from PIL import Image

    page.goto(site + "/")
    images = images_for_the_preparation()
    got = page.evaluate("""async (images) => {
        const { prepareDigit } = await import('/static/digit.js');
        const out = {};
        for (const [name, { h, w, gray }] of Object.entries(images)) {
            const r = prepareDigit(Float64Array.from(gray), h, w);
            out[name] = r.error ? { error: r.error } : { pixels: Array.from(r.pixels) };
        }
        return out;
    }""", {name: {"h": a.shape[0], "w": a.shape[1], "gray": a.ravel().tolist()}
           for name, a in images.items()})
    for name, gray in images.items():
        png = tmp_path / f"{name}.png"
        Image.fromarray(gray).save(png)
        try:
            want = _load_image(png)
        except ValueError as e:
            assert "error" in got[name], (name, str(e))
            continue
        assert "pixels" in got[name], (name, got[name])
        pixels = np.asarray(got[name]["pixels"])
        assert np.abs(pixels - want.astype(int)).max() <= 1, name
        assert (pixels != want).sum() <= 3, (name, int((pixels != want).sum()))
        assert want.max() > 0  # a digit, not an empty field
    assert page.errors == []


def test_a_digit_drawn_by_touch(browser, site, served_runs, tmp_path):
    """A finger on a touch screen (Chromium's touch events, as a phone sends them)."""
    context = browser.new_context(viewport={"width": 800, "height": 900}, has_touch=True)
    page = context.new_page()
    try:
        page.goto(f"{site}/draw?path=one")
        box = page.locator("#pad").bounding_box()
        cdp = context.new_cdp_session(page)
        points = [(box["x"] + 140, box["y"] + y) for y in range(40, 250, 15)]  # a 1
        for kind, point in [("touchStart", points[0]), *(("touchMove", q) for q in points[1:]),
                            ("touchEnd", None)]:
            cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [] if point is None
                                                  else [{"x": point[0], "y": point[1]}]})
        state = answer(page)
        assert state["strokes"] == 1
        check_against_python(state, load_run(served_runs[0] / "one"), tmp_path)
        shot(page, tmp_path, "draw-touch")
    finally:
        context.close()


def test_a_run_page_gains_a_point_while_the_run_trains(page, served_runs, tmp_path):
    root, data, config = served_runs
    shutil.copytree(root / "one", tmp_path / "runs" / "live")
    with serving(tmp_path / "runs") as server:
        base = address(server)
        page.goto(f"{base}/run?path=live")
        page.wait_for_selector("#acc-chart svg[data-points='2']")
        cells = page.locator("table.confusion tbody td").all_inner_texts()
        evaluation = load_run(tmp_path / "runs" / "live").evaluation
        assert [int(c) for c in cells] == [n for row in evaluation["confusion"] for n in row]
        # The model's layers, as jaxmlp.summary counts them.
        table = summary(SERVED_ARCH, 784)
        rows = [r.split("\t") for r in page.locator("table.model tbody tr").all_inner_texts()]
        assert rows[0][:2] == ["input", "784"] and rows[-1][4:] == [
            f"{table.params:,}", f"{table.multiply_adds:,}"]
        assert [r[1:] for r in rows[1:-1]] == [
            [f"{units:,}", activation, f"{shape[0]} × {shape[1]}", f"{params:,}", f"{madds:,}"]
            for _, units, activation, shape, params, madds in table.rows]
        assert page.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
        shot(page, tmp_path, "run-2-epochs")
        draw = page.context.new_page()  # a draw page open while the run trains on
        draw.goto(f"{base}/draw?path=live")
        draw.wait_for_selector("#pad")
        stroke(draw, [(70, 50), (200, 50), (120, 240)])
        check_against_python(answer(draw), load_run(tmp_path / "runs" / "live"), tmp_path)
        train_and_evaluate(dataclasses.replace(config, epochs=3), tmp_path / "runs" / "live",
                           resume=True, data=data, log=lambda *a: None)
        page.wait_for_selector("#acc-chart svg[data-points='3']", timeout=20_000)  # no reload
        assert page.locator("#loss-chart svg").get_attribute("data-points") == "3"
        shot(page, tmp_path, "run-3-epochs")
        # Its next check finds the new weights, which the page then uses.
        stroke(draw, [(100, 150), (210, 150)])
        state = answer(draw)
        assert draw.inner_text("#notice") == "The run saved new weights: the page now uses them."
        check_against_python(state, load_run(tmp_path / "runs" / "live"), tmp_path)
    assert page.errors == []


def test_the_runs_page_and_a_sweep(page, site, served_runs, tmp_path):
    page.goto(site + "/")
    page.wait_for_selector("table.runs")
    rows = page.locator("table.runs tbody tr").all_inner_texts()
    assert [r.split("\t")[0] for r in rows] == ["grid/sweep", "one"]
    assert "sweep of 4" in rows[0]
    # The columns of `jaxmlp runs`: size, optimizer, rate.
    cells = rows[1].split("\t")
    assert cells[4:7] == [f"{summary(SERVED_ARCH).params:,}", "sgd", "0.1"], cells
    assert rows[0].split("\t")[6] == "0.05..0.1 (2)"
    shot(page, tmp_path, "runs")
    page.click("text=grid/sweep")
    page.wait_for_selector("#acc-chart svg[data-points='2']")
    chart = page.locator("#acc-chart")
    assert chart.locator("polyline.thin").count() == 4  # every model
    assert chart.locator("polygon.band").count() == 2  # mean ± std of each setting
    assert chart.locator("figcaption .key").all_inner_texts() == [
        "lr 0.05, momentum 0.9: mean ± std of 2", "lr 0.1, momentum 0.9: mean ± std of 2"]
    shot(page, tmp_path, "sweep")
    page.locator("table.models a", has_text="draw").nth(1).click()
    page.wait_for_selector("#pad")
    stroke(page, [(140, 40), (140, 240)])  # a 1
    state = answer(page)
    check_against_python(state, load_run(served_runs[0] / "grid/sweep", model=1), tmp_path)
    shot(page, tmp_path, "sweep-model-1")
    assert page.errors == []


def test_hostile_requests_from_the_page_are_refused(page, site, tmp_path):
    page.goto(f"{site}/run?path=../..")
    page.wait_for_selector(".error")
    assert page.inner_text(".error") == "no run '../..' here"
    shot(page, tmp_path, "refused")
    statuses = page.evaluate("""async () => {
        const big = JSON.stringify({pixels: new Array(100000).fill(0)});
        const post = (body) => fetch('/api/predict?path=one', {method: 'POST',
            headers: {'Content-Type': 'application/json'}, body}).then(async r => [r.status, (await r.json()).error]);
        return [await post(big), await post('{'),
                (await fetch('/files/one/..%2f..%2fconfig.json')).status];
    }""")
    assert statuses[0][0] == 413 and "at most 65536" in statuses[0][1]
    assert statuses[1][0] == 400 and "not JSON" in statuses[1][1]
    assert statuses[2] == 404
    page.errors.clear()  # the browser reports each refused fetch as a console error


# Views of a run that no jaxmlp writes, but that hand-edited run files (or a server that
# misses a case) could send: (the view, a note the page must show). The page shows what it
# can of each, says what it left out, and never stops with a script error.
_SWEEP = {"kind": "sweep", "path": "junk", "version": "1", "order": "settings",
          "config": {"dataset": "mnist", "arch": "16:relu,10:linear", "epochs": 3},
          "grid": {"seeds": [0, 1], "lrs": [0.1], "momenta": [0.9]},
          "models": [{"index": 0, "seed": 0, "lr": 0.1, "momentum": 0.9},
                     {"index": 1, "seed": 1, "lr": 0.1, "momentum": 0.9}],
          "settings": [{"lr": 0.1, "momentum": 0.9, "models": [0, 1]}],
          "evaluations": {}, "evaluation_errors": {}, "model_pictures": {}, "summary": None}
_RECORD = {"train_loss": 1.0, "train_acc": 0.5, "test_loss": 1.1, "test_acc": 0.5}
_JUNK_VIEWS = {
    "a single run's values as strings, nulls and junk records": ({
        "kind": "run", "path": "junk", "version": "1", "config": {"dataset": "mnist", "arch": 7},
        "history": [{"epoch": 1, "step": 1, "train_acc": "x", "test_acc": None, "train_loss": 1.2,
                     "test_loss": "NaN"}, {"epoch": 2, "step": 2, **_RECORD}, "a line", None,
                    {"epoch": "3"}, [1, 2]],
        "evaluation": {"test_acc": "x", "test_loss": None, "per_class_acc": [1, "x", None, {}],
                       "confusion": [["a"], None, 3, [1, -2, 1e308]],
                       "mistakes": [1, "x", None, {"index": 3}]},
        "pictures": "curves.png", "has_model": "yes",
        "model": {"in_dim": "7", "layers": [None, {"units": "x", "weights": 3}, [1]]}},
        "4 of metrics.jsonl's records are not epoch records"),
    "a sweep whose models are [] or a dict": ({
        **_SWEEP, "history": [{"epoch": 1, "step": 1, "models": []},
                              {"epoch": 2, "step": 2, "models": {"a": 1}},
                              {"epoch": 3, "step": 3, "models": [None, {"test_acc": "x"}]},
                              {"epoch": 4, "step": 4,
                               "models": [_RECORD, {**_RECORD, "diverged": 1}]}],
        "evaluations": {"0": {"per_class_acc": "x", "confusion": {"a": 1}}, "1": None},
        "evaluation_errors": {"1": ["not", "a", "string"]}, "model_pictures": None,
        "summary": {"settings": [None, {"lr": "x", "seeds": 3}]}},
        "2 of metrics.jsonl's epoch records do not hold one result per model"),
    "a sweep with nothing but its kind": ({"kind": "sweep"}, None),
    "a sweep's every list a dict": ({**{k: {"a": 1} for k in _SWEEP}, "kind": "sweep"}, None),
    "an empty object": ({}, None),
    "a list": ([1, 2], "the server's answer is not a run's view"),
    "null": (None, "the server's answer is not a run's view"),
    "accuracies one float apart": ({  # a chart whose axis steps are below a float's precision
        "kind": "run", "path": "junk", "version": "1", "config": {"steps": 20},
        "history": [{"epoch": 1, "step": 1, **_RECORD}, {"epoch": 2, "step": 2, **_RECORD,
                                                         "test_acc": 0.5000000000000001}]},
        "step 2 of 20 steps (epoch 2)"),  # a run counted in steps says so
    "values too large to draw": ({
        "kind": "run", "path": "junk", "version": "1", "config": {},
        "history": [{"epoch": 1, "step": 1, **_RECORD, "test_loss": -1.7e308},
                    {"epoch": 2, "step": 2, **_RECORD, "test_loss": 1.7e308}]}, None),
}


def _validated_sweep() -> dict:
    """A sweep view with a validation split: setting 0 learns (val 0.95, 0.96), setting 1
    stalls at chance (0.1); the summary chose setting 0 by its validation ensemble."""
    def record(epoch, val, test):
        return {"epoch": epoch, "step": epoch, "models": [
            {**_RECORD, "val_acc": v, "val_loss": 2 - v, "test_acc": t} for v, t in zip(val, test)]}
    settings = [{"lr": 0.1, "momentum": 0.9, "seeds": [0, 1], "val_acc_mean": 0.955,
                 "ensemble_val_acc": 0.96, "test_acc_mean": 0.95, "test_acc_std": 0.001,
                 "ensemble_test_acc": 0.951},
                {"lr": 1.0, "momentum": 0.9, "seeds": [0, 1], "val_acc_mean": 0.1,
                 "ensemble_val_acc": 0.1, "test_acc_mean": 0.1, "test_acc_std": 0.0,
                 "ensemble_test_acc": 0.1}]
    return {**_SWEEP, "grid": {"seeds": [0, 1], "lrs": [0.1, 1.0], "momenta": [0.9]},
            "models": [{"index": i, "seed": i % 2, "lr": [0.1, 1.0][i // 2], "momentum": 0.9}
                       for i in range(4)],
            "settings": [{"lr": 0.1, "momentum": 0.9, "models": [0, 1]},
                         {"lr": 1.0, "momentum": 0.9, "models": [2, 3]}],
            "history": [record(1, [0.9, 0.91, 0.1, 0.1], [0.8, 0.81, 0.1, 0.1]),
                        record(2, [0.95, 0.96, 0.1, 0.1], [0.94, 0.95, 0.1, 0.1])],
            "summary": {"settings": settings, "best": {"lr": 0.1, "momentum": 0.9,
                                                       "chosen_by": "ensemble_val_acc"}}}


def test_a_sweep_page_speaks_validation_and_marks_the_chosen_setting(page, site, tmp_path):
    import json

    page.route("**/api/run?*", lambda route: route.fulfill(
        status=200, content_type="application/json", body=json.dumps(_validated_sweep())))
    page.goto(f"{site}/run?path=junk")
    page.wait_for_selector("#acc-chart svg[data-points='2']")
    chart = page.locator("#acc-chart")
    assert chart.locator(".chart-title").text_content() == "validation accuracy, every model"
    # The stalled setting is named, not drawn: the axis is the learning setting's.
    assert chart.locator("polyline.thin").count() == 2
    assert chart.locator("figcaption .key").all_inner_texts() == [
        "lr 0.1, momentum 0.9: mean ± std of 2", "lr 1, momentum 0.9: below the axis"]
    ticks = [float(t) for t in chart.locator(".tick.y").all_text_contents()]
    assert min(ticks) > 0.5, ticks
    assert page.locator("#test-chart .chart-title").text_content() == "test accuracy, every model"
    head = page.locator("table.summary thead th").all_inner_texts()
    assert head[3:5] == ["mean val acc", "val ensemble"]
    chosen = page.locator("table.summary tr.best").all_inner_texts()
    assert len(chosen) == 1 and chosen[0].split("\t")[:2] == ["0.1", "0.9"]
    assert chosen[0].endswith("chosen (by validation ensemble)")
    shot(page, tmp_path, "validated-sweep")
    assert page.errors == []
    page.unroute("**/api/run?*")


def test_a_run_page_survives_any_json(page, site, tmp_path):
    """Each view above, sent as /api/run's answer (Playwright answers for the server): the
    page draws the run's title and charts, the note that goes with the view, and no part
    falls back to "could not be shown" (every case is handled, not caught)."""
    import json

    answer = {}
    page.route("**/api/run?*", lambda route: route.fulfill(
        status=200, content_type="application/json", body=json.dumps(answer["view"])))
    for i, (case, (view, note)) in enumerate(_JUNK_VIEWS.items()):
        answer["view"] = view
        page.goto(f"{site}/run?path=junk")  # the page from the server, its run from above
        page.wait_for_selector("#acc-chart svg, #app .error", timeout=10_000)
        shown = page.inner_text("#app")
        shot(page, tmp_path, f"junk-{i}")
        assert page.inner_text("h1") == "junk", case
        for chart in ("#acc-chart svg", "#loss-chart svg"):
            assert page.locator(chart).count() == 1, (case, chart)
        assert "could not be shown" not in shown and "Cannot read" not in shown, (case, shown)
        if note:
            assert note in shown, (case, shown)
        assert page.errors == [], (case, page.errors)
    page.unroute("**/api/run?*")


def test_the_runs_page_survives_any_json(page, site, tmp_path):
    import json

    runs = [{"path": "ok", "kind": "run", "dataset": "mnist", "arch": "a", "epochs": "x",
             "params": "many", "lr": [0.1, "x", None], "seconds": 1e300, "optimizer": 3,
             "planned_epochs": None, "step": [], "modified": "yesterday", "test_acc": "NaN",
             "val_acc": 0.5}, None, "a row", [1], {"path": 3, "error": {"a": 1}},
            {"path": {"a": 1}, "kind": "sweep", "models": None, "modified": 1e300,
             "planned_steps": 5}]
    answers = [{"root": "R", "runs": runs}, {"root": None, "runs": None}, [], None, "text"]
    answer = {}
    page.route("**/api/runs", lambda route: route.fulfill(
        status=200, content_type="application/json", body=json.dumps(answer["data"])))
    for data in answers:
        answer["data"] = data
        page.goto(f"{site}/")
        page.wait_for_selector("h1")
        shown = page.inner_text("#app")
        assert page.inner_text("h1") == "Runs" and "could not be shown" not in shown, (data, shown)
        assert page.errors == [], (data, page.errors)
    answer["data"] = answers[0]
    page.goto(f"{site}/")
    page.wait_for_selector("table.runs")
    rows = page.locator("table.runs tbody tr").all_inner_texts()
    assert len(rows) == 6 and rows[0].split("\t")[:2] == ["ok", "run"] and "50.00%" in rows[0]
    shot(page, tmp_path, "junk-runs")


def test_a_served_folder_of_malformed_runs_is_shown_as_far_as_it_can_be(page, served_runs,
                                                                         tmp_path):
    """Run files the server passes on (NaN where a record may hold anything, sent as null;
    keys it does not know) or refuses (a record whose metrics are not numbers, an eval.json
    of the wrong values, a sweep whose models are []): the run page shows its title, its
    curves, and the file at fault."""
    import json

    root = tmp_path / "runs"
    run = shutil.copytree(served_runs[0] / "one", root / "odd")
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    nan = float("nan")
    lines[0].update(epoch_seconds=nan, eval_seconds=nan, x="y")
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    strings = shutil.copytree(served_runs[0] / "one", root / "strings")
    lines[0].update(train_acc="x", test_acc=nan)
    (strings / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (run / "eval.json").write_text(json.dumps({"test_acc": 0.5, "test_loss": 1.0,
                                               "per_class_acc": [], "confusion": [],
                                               "mistakes": [1, "x", None]}))
    sweep = shutil.copytree(served_runs[0] / "grid/sweep", root / "empty")
    lines = [json.loads(line) for line in (sweep / "metrics.jsonl").read_text().splitlines()]
    (sweep / "metrics.jsonl").write_text("".join(json.dumps({**r, "models": []}) + "\n"
                                                 for r in lines))
    with serving(root) as server:
        page.goto(f"{address(server)}/run?path=odd")
        page.wait_for_selector("#acc-chart svg[data-points='2']")  # both epochs' accuracies
        assert page.inner_text("h1") == "odd"
        assert page.locator("#acc-chart svg polyline").count() == 3
        assert "odd/eval.json is not jaxmlp eval's output" in page.inner_text("#app .error")
        shot(page, tmp_path, "malformed-run")
        page.goto(f"{address(server)}/run?path=empty")
        page.wait_for_selector("#app .error")
        shown = page.inner_text("#app")
        assert "empty/metrics.jsonl" in shown and "Cannot read" not in shown, shown
        shot(page, tmp_path, "malformed-sweep")
        page.goto(f"{address(server)}/run?path=strings")
        page.wait_for_selector("#app .error")
        shown = page.inner_text("#app")
        assert "strings/metrics.jsonl line 1 is not an epoch record" in shown, shown
        page.goto(f"{address(server)}/")
        page.wait_for_selector("table.runs")
        rows = page.locator("table.runs tbody tr").all_inner_texts()
        assert sorted(r.split("\t")[0] for r in rows) == ["empty", "odd", "strings"]
    # The refused /api/run is a console message of the browser's own; no script failed.
    assert [e for e in page.errors if "Failed to load resource" not in e] == []


def test_ticked_runs_are_compared_on_one_chart(page, served_runs, tmp_path):
    # Issue 26: pick runs on the runs page and overlay their curves; the settings that
    # differ side by side.
    import json

    root, _, _ = served_runs
    for name in ("one", "two"):
        shutil.copytree(root / "one", tmp_path / "runs" / name)
    config = tmp_path / "runs" / "two" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "lr": 0.2}))
    with serving(tmp_path / "runs") as server:
        page.goto(address(server) + "/")
        page.wait_for_selector("table.runs")
        for name in ("one", "two"):
            page.check(f"input[aria-label='compare {name}']")
        page.wait_for_timeout(2500)  # the page redraws: the ticks stay
        assert page.locator("input.pick:checked").count() == 2
        assert page.inner_text("#compare") == "compare the 2 ticked runs"
        page.click("#compare")
        page.wait_for_selector("#compare-val_acc svg")
        for key in ("test_acc", "val_acc"):
            chart = page.locator(f"#compare-{key}")
            assert chart.locator("figcaption .key").all_inner_texts() == ["one", "two"]
            assert chart.locator("svg").get_attribute("data-points") == "2"
        rows = page.locator("table.differ tbody tr").all_inner_texts()
        assert rows == ["lr\t0.1\t0.2"]
        shot(page, tmp_path, "compare")
        assert page.errors == []
        page.goto(address(server) + "/compare?path=one&path=nope")  # a run that is not there
        page.wait_for_selector("p.problem")
        assert page.inner_text("p.problem").startswith("nope: ")
        assert page.locator("#compare-test_acc figcaption .key").all_inner_texts() == ["one"]
    # (the browser logs the server's 404 for nope)
    assert all("404" in e for e in page.errors), page.errors
