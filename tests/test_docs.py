"""Every command and Python example in README.md and docs/*.md is run by a test.

Each fenced block of the pages is covered, or this file fails (`test_every_block_is_covered`):

- ``sh``/``bash``: one command a line (``#`` comments, ``VAR=value`` prefixes), run as a
  subprocess (``jaxmlp …`` as ``python -m jaxmlp …``) in a working directory of the page's
  own, in page order, each checked for what it claims (``CHECKS``), not only its exit status;
- ``console``: ``$ command`` lines, each followed by the output lines that must appear, in
  order (``…`` is any text), and ``(exit N)``;
- ``python``: executed in a directory holding ``runs/default``; must not raise;
- ``text`` marked ``<!-- test: files -->``: the files it names exist.

``<!-- test: A => B; … -->`` right above a block shortens what runs (``--epochs 10 =>
--epochs 1``), visibly in the page's source. ``NOT_RUN`` says which commands are not run and
why (their flags are still checked); ``PENDING`` holds commands documented ahead of the code.
docs/testing.md describes all this for readers of the pages.
"""

import concurrent.futures
import contextlib
import dataclasses
import importlib
import json
import re
import shlex
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
KINDS = {"sh", "bash", "console", "python", "text"}

# Commands that are not run, and why; each is still checked (`test_commands_not_run_are_valid`).
# A rule is (name, why, matches(page, command, expected exit)).
NOT_RUN = [
    ("make", "make targets build .venv and run whole suites (`make test` is this suite) or "
     "the full 10-epoch training; runs/default stands in for `make train`'s run",
     lambda page, cmd, code: cmd.startswith("make ")),
    ("pytest", "the test suite itself",
     lambda page, cmd, code: re.match(r"(\.venv/bin/)?python -m pytest\b|pytest\b", cmd)),
    ("bitwise", "trains with two versions of the package, a minute; this suite holds the "
     "same runs to float32 tolerance (tests/test_trajectories.py)",
     lambda page, cmd, code: cmd.startswith("python scripts/trajectories.py")),
    ("multi-host", "needs two hosts (tests/test_parallel.py runs two processes on 127.0.0.1)",
     lambda page, cmd, code: "--coordinator host0:" in cmd),
    ("launcher", "needs SLURM: tests/test_parallel.py launches two processes on 127.0.0.1 in "
     "the environment srun gives them",
     lambda page, cmd, code: cmd.startswith("srun ")),
    ("other dataset", "the test data holds only MNIST, and no network (tests/test_datasets.py "
     "trains the other datasets on TFDS mock data)",
     lambda page, cmd, code: code == 0 and re.search(r"--dataset[ =](?!mnist\b|npz:|folder:)", cmd)),
    ("measurement", "docs/results.md: the commands that made its tables, minutes to hours each",
     lambda page, cmd, code: page == "docs/results.md"),
    ("activate", "puts .venv/bin on the shell's PATH; every command here runs as that shell's",
     lambda page, cmd, code: cmd == "source .venv/bin/activate"),
    ("serve", "serves until Ctrl-C: tests/test_serve.py starts the command, asks it and stops "
     "it; tests/test_browser.py drives its page",
     lambda page, cmd, code: code == 0 and cmd.startswith("jaxmlp serve")),
]

# Documented before the code that takes them lands: expected to fail today (exit 2, the
# argument refused). Once one passes, remove it here.
# Each: the command as the page shows it → what the refusal says; with a comment naming the
# change it waits for. (Issue 16's `jaxmlp sweep --no-progress` was the first; it landed.)
PENDING: dict = {}

# Files the pages name ahead of the code (none today).
PENDING_FILES: set = set()

# The inputs `jaxmlp predict` is shown with, cut from the MNIST test set: file → the test
# images it holds (the `inputs` fixture writes them).
INPUTS = {"digit.png": 0, "more.jpg": 0, "photo.jpg": 1, "batch.npy": slice(2, 5)}
# The .npz of your own data that docs/training.md trains on, as its Python example writes it,
# and the folder of images its other example writes (that example is run to make it).
OWN_DATA = "colours.npz"
OWN_FOLDER = "colour_images"


@dataclasses.dataclass
class Block:
    page: str  # relative to the repository
    line: int
    kind: str
    body: str
    note: str  # the <!-- test: … --> above it, or ""

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    def substitutions(self) -> list[tuple[str, str]]:
        return [(a.strip(), b.strip()) for a, b in (part.split("=>", 1)
                for part in self.note.split(";") if "=>" in part)]


@dataclasses.dataclass
class Command:
    block: Block
    text: str  # as the page shows it
    run: str  # after the block's substitutions
    code: int = 0  # the exit status it must end with
    expected: tuple = ()  # console output lines

    @property
    def argv(self) -> list[str]:
        return [t for t in shlex.split(self.run) if not _is_env(t)]

    @property
    def environ(self) -> dict:
        return dict(t.split("=", 1) for t in shlex.split(self.run)[:_env_count(self.run)])


def _is_env(token):
    return re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", token) is not None


def _env_count(text):
    tokens = shlex.split(text)
    return next((i for i, t in enumerate(tokens) if not _is_env(t)), len(tokens))


def page_blocks(path: Path) -> list[Block]:
    text = path.read_text()
    blocks = []
    for m in re.finditer(r"(?:<!--\s*test:(?P<note>.*?)-->[ \t]*\n)?^```(?P<kind>[^\n]*)\n"
                         r"(?P<body>.*?)^```[ \t]*$", text, re.S | re.M):
        blocks.append(Block(str(path.relative_to(ROOT)), text.count("\n", 0, m.start("kind")) + 1,
                            m["kind"].strip(), m["body"], " ".join((m["note"] or "").split())))
    return blocks


def all_blocks() -> list[Block]:
    return [b for page in PAGES for b in page_blocks(page)]


def _substitute(block: Block, text: str, used: set) -> str:
    for old, new in block.substitutions():
        if old in text:
            used.add(old)
            text = text.replace(old, new)
    return text


def block_commands(block: Block) -> list[Command]:
    """The commands of a ``sh``/``bash``/``console`` block, with the block's substitutions."""
    commands: list = []
    used: set = set()
    if block.kind in ("sh", "bash"):
        for line in block.body.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                text = shlex.join(words)
                commands.append(Command(block, text, _substitute(block, text, used)))
    elif block.kind == "console":
        for line in block.body.splitlines():
            if line.startswith("$ "):
                commands.append(Command(block, line[2:].strip(),
                                        _substitute(block, line[2:].strip(), used)))
            elif not commands:
                raise AssertionError(f"{block.where}: output before the first `$ ` command")
            elif m := re.fullmatch(r"\(exit (\d+)\)", line.strip()):
                commands[-1].code = int(m[1])
            elif line.strip():
                commands[-1].expected += (line.rstrip(),)
    stale = {old for old, _ in block.substitutions()} - used
    assert not stale, f"{block.where}: substitution {sorted(stale)} matches no command"
    return commands


def not_run_reason(command: Command):
    for name, why, matches in NOT_RUN:
        if matches(command.block.page, command.run, command.code):
            return name, why
    return None


def classify() -> dict:
    """Every block, sorted into what this file does with it; fails on one it cannot place."""
    run: list = []
    not_run: list = []
    pending: list = []
    python: list = []
    files: list = []
    problems: list = []
    for block in all_blocks():
        if block.kind not in KINDS:
            problems.append(f"{block.where}: a ```{block.kind} block (use one of {sorted(KINDS)})")
        elif block.kind == "python":
            python.append(block)
        elif block.kind == "text":
            (files if block.note == "files" else problems).append(
                block if block.note == "files" else
                f"{block.where}: a text block without <!-- test: files -->")
        else:
            try:
                commands = block_commands(block)
            except AssertionError as e:  # a stale substitution, output before a command
                problems.append(str(e))
                continue
            if not commands:
                problems.append(f"{block.where}: a {block.kind} block without commands")
            for command in commands:
                if command.text in PENDING:
                    pending.append(command)
                elif not_run_reason(command):
                    not_run.append(command)
                else:
                    run.append(command)
    return dict(run=run, not_run=not_run, pending=pending, python=python, files=files,
                problems=problems)


# ---------------------------------------------------------------------------------------------
# Offline: the pages' structure, links, names and tables.

def test_every_block_is_covered():
    sorted_ = classify()
    assert not sorted_["problems"], "\n".join(sorted_["problems"])
    covered = sum(len(sorted_[k]) for k in ("run", "not_run", "pending", "python", "files"))
    assert covered and sorted_["run"] and sorted_["python"]
    for command in sorted_["run"] + sorted_["pending"]:
        assert command.argv[0] in ("jaxmlp", "jaxmlp-train"), (
            f"{command.block.where}: `{command.text}` is neither a jaxmlp command nor in NOT_RUN")
    # No stale entries: every rule and pending command still matches something in the pages.
    used = {not_run_reason(c)[0] for c in sorted_["not_run"]}
    assert used == {name for name, _, _ in NOT_RUN}, f"NOT_RUN rules unused: " \
        f"{ {n for n, _, _ in NOT_RUN} - used}"
    assert {c.text for c in sorted_["pending"]} == set(PENDING), "a PENDING command left the pages"
    # The list of what is not run stays short.
    assert len(sorted_["not_run"]) <= 41, [c.text for c in sorted_["not_run"]]


def _jaxmlp_argv(argv):
    return ["train", *argv[1:]] if argv[0] == "jaxmlp-train" else argv[1:]


def _script_flags(script: Path) -> set:
    return set(re.findall(r"add_argument\(\s*\"(--[\w-]+)\"", script.read_text()))


def test_commands_not_run_are_valid():
    """Not run, but not unchecked: each names flags its command takes, targets that exist."""
    from jaxmlp.app._cli import _build_parser

    makefile = (ROOT / "Makefile").read_text()
    for command in classify()["not_run"]:
        argv, where = command.argv, f"{command.block.where}: `{command.text}`"
        if argv[0] in ("jaxmlp", "jaxmlp-train"):
            try:
                _build_parser().parse_args(_jaxmlp_argv(argv))
            except SystemExit:
                pytest.fail(f"{where}: the command line is refused")
        elif argv[0] == "srun":  # the jaxmlp command it launches on every task
            assert argv[1] == ".venv/bin/jaxmlp", where
            try:
                _build_parser().parse_args(argv[2:])
            except SystemExit:
                pytest.fail(f"{where}: the command line is refused")
        elif argv[0] == "make":
            for target in [a for a in argv[1:] if "=" not in a and not a.startswith("-")]:
                assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"{where}: no target"
        elif argv[0].endswith("python") and argv[1].startswith("scripts/"):
            script = ROOT / argv[1]
            assert script.is_file(), f"{where}: no such script"
            flags = {a.split("=")[0] for a in argv[2:] if a.startswith("--")}
            assert flags <= _script_flags(script), f"{where}: {flags - _script_flags(script)}"
        elif argv[0] == "source":  # the environment `make setup` made
            assert argv[1:] == [".venv/bin/activate"], where
            assert "$(PYTHON) -m venv $(VENV)" in makefile and "VENV := .venv" in makefile
        elif "pytest" in argv[:4]:
            marks = re.findall(r"^\s*\"(\w+):", (ROOT / "pyproject.toml").read_text(), re.M)
            after = argv[argv.index("pytest") + 1:]
            for flag, value in zip(after, after[1:]):
                if flag == "-m":
                    assert set(re.findall(r"\w+", value)) - {"not", "and", "or"} <= set(marks)
        else:
            pytest.fail(f"{where}: not a command this file knows how to check")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    return {_slug(h) for h in re.findall(r"^#+ (.*)$", text, re.M)}


def test_links_between_pages_resolve():
    for page in PAGES:
        text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"\w+://", target):
                continue
            file, _, anchor = target.partition("#")
            path = (page.parent / file).resolve() if file else page
            assert path.exists(), f"{page.name}: link to {target}: no such file"
            if anchor:
                assert anchor in _anchors(path), f"{page.name}: link to {target}: no such heading"


def test_named_tests_modules_and_scripts_exist():
    sources = "\n".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    defined = set(re.findall(r"^def (test_\w+)", sources, re.M))
    for page in PAGES:
        text = page.read_text()
        for name in re.findall(r"`(test_\w+)(?:\[[^\]]*\])?`", text):
            if re.match(r"test_(acc|loss)", name):  # a metric (metrics.jsonl), not a test
                continue
            assert name in defined, f"{page.name} names {name}, which no test file defines"
        for dotted in re.findall(r"`(jaxmlp(?:\.\w+)+)", text):  # jaxmlp.module.name
            parts = dotted.split(".")
            for end in range(len(parts), 0, -1):  # the longest module it names, then names
                try:
                    found = importlib.import_module(".".join(parts[:end]))
                    break
                except ModuleNotFoundError:
                    continue
            for name in parts[end:]:
                found = getattr(found, name, None)
            assert found is not None, f"{page.name} names {dotted}, which does not exist"
        for path in re.findall(r"`((?:jaxmlp|scripts|tests)/[\w/]+\.py)`", text):
            assert (ROOT / path).is_file() or path in PENDING_FILES, (
                f"{page.name} names {path}, which does not exist")


def _table(page: Path, header: str) -> list[list[str]]:
    lines = page.read_text().splitlines()
    start = lines.index(header)
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def test_api_table_lists_exactly_jaxmlp_all():
    import jaxmlp

    rows = _table(ROOT / "docs" / "api.md", "| name | module | what |")
    names = [re.match(r"`(\w+)", row[0])[1] for row in rows]
    assert len(names) == len(set(names)), "a name listed twice"
    public = set(jaxmlp.__all__)
    assert not public - set(names), f"not listed: {public - set(names)}"
    assert not set(names) - public, f"not in __all__: {set(names) - public}"
    for name, row in zip(names, rows):
        module = importlib.import_module(row[1].strip("`"))
        assert getattr(module, name) is getattr(jaxmlp, name), f"{name} is not in {row[1]}"


def test_every_module_is_private():
    # Equinox's habit: one explicit surface. jaxmlp.__all__ (docs/api.md) is the API; every
    # module is private (``jaxmlp._mlp``), so a name without an underscore inside one is
    # shared between modules, not promised to users (test_imports: none imports a private name).
    modules = [p.relative_to(ROOT / "jaxmlp") for p in (ROOT / "jaxmlp").rglob("*.py")]
    public = [str(m) for m in modules if m.name not in ("__init__.py", "__main__.py")
              and not any(part.startswith("_") for part in m.parts)]
    assert not public, f"public modules: {public}"
    assert len(modules) > 20


def test_settings_table_lists_every_flag_of_train():
    from jaxmlp.app._cli import _build_parser

    parser = _build_parser()
    train = next(a for a in parser._actions if a.dest == "command").choices["train"]
    flags = {s for a in train._actions for s in a.option_strings if s not in ("-h", "--help")}
    rows = _table(ROOT / "docs" / "training.md", "| flag | default | what |")
    listed = [re.match(r"`(--[\w-]+)", row[0])[1] for row in rows]
    assert len(listed) == len(set(listed)), "a flag listed twice"
    assert not flags - set(listed), f"flags of `jaxmlp train` not listed: {flags - set(listed)}"
    assert not set(listed) - flags, f"not flags of `jaxmlp train`: {set(listed) - flags}"


def test_layout_names_every_module_and_script():
    for block in classify()["files"]:
        named, folder = set(), ""
        for line in block.body.splitlines():
            if line and not line[0].isspace():
                folder = line.split()[0] if line.split()[0].endswith("/") else ""
                if not folder:
                    assert (ROOT / line.split()[0]).exists(), f"{block.where}: {line.split()[0]}"
            for name in re.findall(r"(?<![\w/])(\w+\.py)\b", line):
                named.add(folder + name)
                assert (ROOT / folder / name).is_file(), f"{block.where}: {folder}{name}"
        for folder in ("jaxmlp", "jaxmlp/app", "scripts"):
            present = {f"{folder}/{p.name}" for p in (ROOT / folder).glob("*.py")
                       if p.name != "__init__.py"}
            assert present <= named, f"{block.where} leaves out {sorted(present - named)}"


def test_step_page_states_the_path_it_walks():
    # docs/step.md's figures are scripts/step_path.py's, and it names every function counted.
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import step_path
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    flat = " ".join((ROOT / "docs" / "step.md").read_text().split())
    lines, code, modules = step_path.totals(step_path.PATH)
    assert (f"**{len(step_path.PATH)} functions in {modules} modules, {code} lines of code "
            f"({lines} with their docstrings)**") in flat
    assert modules <= 6 and code <= 300  # issue 25's target
    for _, name in step_path.PATH:
        assert re.search(r"[`.]" + re.escape(name) + r"[`(]", flat), name
    lines, code, modules = step_path.totals(step_path.LEAVES)
    assert f"{code} lines in {modules} modules" in flat


# ---------------------------------------------------------------------------------------------
# With the real MNIST: the commands and examples run.

@pytest.fixture(scope="session")
def inputs(mnist, tmp_path_factory) -> Path:
    """The files the pages hand to `jaxmlp predict`, cut from the MNIST test set."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("inputs")
    images = mnist.test_images.reshape(-1, 28, 28)
    # As MNIST stores it; then dark on light, 3 times larger; dark on light paper, 4 times
    # larger with a margin; three images as one array.
    Image.fromarray(images[INPUTS["digit.png"]]).save(folder / "digit.png")
    Image.fromarray(255 - images[INPUTS["more.jpg"]]).resize((84, 84)).save(folder / "more.jpg",
                                                                           quality=95)
    photo = np.full((120, 120), 255, np.uint8)
    photo[4:116, 4:116] = 255 - np.asarray(Image.fromarray(images[INPUTS["photo.jpg"]])
                                           .resize((112, 112)))
    Image.fromarray(photo).save(folder / "photo.jpg", quality=95)
    np.save(folder / "batch.npy", images[INPUTS["batch.npy"]])
    rng = np.random.default_rng(0)  # docs/training.md's "Your own data", as it makes it
    labels = rng.integers(0, 3, 512)
    pixels = rng.random((512, 6, 5, 3)) * 0.5
    pixels[np.arange(512), :, :, labels] += 0.5
    np.savez(folder / OWN_DATA, x_train=pixels[:448], y_train=labels[:448],
             x_test=pixels[448:], y_test=labels[448:])
    (writes,) = [b for b in classify()["python"] if f'Path("{OWN_FOLDER}")' in b.body]
    with contextlib.chdir(folder):  # the page's own code writes the folder
        exec(compile(writes.body, writes.where, "exec"), {"__name__": "__docs__"})
    return folder


def _train_default(folder: Path, env: dict) -> Path:
    """runs/default as `make train` (`jaxmlp train --out runs/default`) makes it, one epoch
    instead of ten. It also leaves preset b's programs in the session's compilation cache."""
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-m", "jaxmlp", "train", "--out", "runs/default",
                           "--epochs", "1", "--quiet"], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return folder / "runs" / "default"


def _needs_default(commands) -> bool:
    return any("runs/default" in c.run for c in commands)


def _matches(expected: str, line: str) -> bool:
    return re.fullmatch(".*".join(map(re.escape, expected.split("…"))), line) is not None


def _last_epoch(folder: Path) -> dict:
    return json.loads((folder / "metrics.jsonl").read_text().splitlines()[-1])


def _check_train(command, args, proc, cwd, mnist):
    from jaxmlp.app._cli import _default_out
    from jaxmlp._config import TrainConfig
    from jaxmlp._data import own_data
    from jaxmlp._run import best_epoch

    lines = proc.stdout.splitlines()
    m = re.fullmatch(r"final test accuracy (\d\.\d{4})( \(validation (\d\.\d{4})\))? after "
                     r"(\d+) steps?; outputs in (\S+)", lines[-1])
    assert m, f"last line: {lines[-1]!r}"
    out = cwd / m[5]
    default = (f"runs/{args.recipe}" if getattr(args, "recipe", None)
               else str(_default_out(args.arch or "b", args.dataset or "mnist")))
    assert m[5] == (args.resume or args.out or default)
    for name in ("config.json", "metrics.jsonl", "checkpoint.npz", "model.npz", "curves.png"):
        assert (out / name).is_file(), f"no {name}"
    last = _last_epoch(out)
    if args.keep_best:  # the kept epoch's figures, the steps of the last
        history = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
        kept = best_epoch(history, args.keep_best)
        assert lines[-2] == f"model.npz is epoch {kept['epoch']}, the best by {args.keep_best}"
        assert m[1] == f"{kept['test_acc']:.4f}" and int(m[4]) == last["step"]
        last = kept
    else:
        assert m[1] == f"{last['test_acc']:.4f}" and int(m[4]) == last["step"]
    assert (m[3] is not None) == ("val_acc" in last)
    config = json.loads((out / "config.json").read_text())
    for field in dataclasses.fields(TrainConfig):  # every setting given is recorded
        given = getattr(args, field.name, None)
        own = own_data(given) if field.name == "dataset" and given else None
        if own:  # made absolute
            given = f"{own[0]}{(cwd / own[1]).resolve()}"
        if given is not None:
            same = (config[field.name] == pytest.approx(given) if isinstance(given, float)
                    else config[field.name] == given)
            assert same, f"config.json: {field.name} is {config[field.name]!r}, not {given!r}"
    if args.quiet:
        assert len(lines) == 1
    if args.resume:
        assert "resumed from" in proc.stdout


def _check_sweep(command, args, proc, cwd, mnist):
    from jaxmlp.app._cli import _parse_floats, _parse_seeds

    m = re.fullmatch(r"outputs in (\S+)", proc.stdout.splitlines()[-1])
    assert m, proc.stdout[-300:]
    out = cwd / m[1]
    sweep = json.loads((out / "sweep.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    if args.seeds:
        assert tuple(sweep["seeds"]) == _parse_seeds(args.seeds)
    if args.lr:
        assert tuple(sweep["lrs"]) == _parse_floats(args.lr, "lr")
    if args.momentum:
        assert tuple(sweep["momenta"]) == _parse_floats(args.momentum, "momentum")
    assert sweep["order"] == (args.order or sweep["order"])
    # The grid: settings outer, seeds inner (docs/sweeps.md).
    grid = [(s, lr, mo) for lr in sweep["lrs"] for mo in sweep["momenta"] for s in sweep["seeds"]]
    assert [(r["seed"], r["lr"], r["momentum"]) for r in summary["models"]] == grid
    assert len(_last_epoch(out)["models"]) == len(grid)
    assert "best setting" in proc.stdout


def _check_eval(command, args, proc, cwd, mnist):
    run = cwd / args.run
    if args.ensemble:  # the committee's accuracy is summary.json's for its setting
        summary = json.loads((run / "summary.json").read_text())
        k = args.setting if args.setting is not None else next(
            i for i, s in enumerate(summary["settings"])
            if (s["lr"], s["momentum"]) == (summary["best"]["lr"], summary["best"]["momentum"]))
        report = json.loads((run / "ensembles" / str(k) / "eval.json").read_text())
        assert report["test_acc"] == summary["settings"][k]["ensemble_test_acc"]
        assert f"test accuracy {report['test_acc']:.4f}" in proc.stdout
        return
    where = run if args.model is None else run / "models" / str(args.model)
    report = json.loads((where / "eval.json").read_text())
    for name in ("confusion.png", "mistakes.png", "weights.png"):
        assert (where / name).is_file()
    last = _last_epoch(run)
    last = last if args.model is None else last["models"][args.model]
    plain = report["without_tta"] if args.tta else report  # --tta: the plain model's beside
    assert plain["test_acc"] == pytest.approx(last["test_acc"], abs=1e-6)
    assert f"test accuracy {report['test_acc']:.4f}" in proc.stdout
    if args.tta:
        assert report["tta"] == {"n": args.tta, "augment": "translation=1", "seed": 0}
        assert f"(without it {plain['test_acc']:.4f})" in proc.stdout
    import jaxmlp

    dataset = jaxmlp.load_run(run, model=args.model).config.dataset
    test_size = (len(np.load(dataset[4:])["y_test"]) if dataset.startswith("npz:")
                 else len(list(Path(dataset[7:]).glob("test/*/*.png")))
                 if dataset.startswith("folder:") else len(mnist.test_labels))
    assert np.array(report["confusion"]).sum() == test_size


def _check_predict(command, args, proc, cwd, mnist):
    import jaxmlp

    lines = proc.stdout.splitlines()
    if args.ensemble:
        run = jaxmlp.load_ensemble(cwd / args.run, args.setting)
        probabilities = jaxmlp.predict_ensemble
    else:
        run = jaxmlp.load_run(cwd / args.run, model=args.model)
        probabilities = jaxmlp.predict
    expected = []  # (input name, class) per output line: the test set's label, or for an
    # array the class the model gives its images in this process
    for name in args.files:
        if name.endswith(".npy"):
            batch = np.load(cwd / name)
            predicted = probabilities(run.params, batch, run.arch).argmax(axis=1)
            expected += [(f"{name}[{i}]", int(c)) for i, c in enumerate(predicted)]
        else:
            expected.append((name, int(mnist.test_labels[INPUTS[name]])))
    assert len(lines) == len(expected), proc.stdout
    for line, (name, label) in zip(lines, expected):
        if args.json:
            record = json.loads(line)
            got, top = record["input"], record["top3"]
            assert record["class"] == record["digit"] == top[0]["class"] and len(top) == 3
            cls = record["class"]
        else:
            m = re.fullmatch(r"(\S+): (\d+)  \((\d+: \d\.\d{3}(, )?){3}\)", line)
            assert m, line
            got, cls = m[1], int(m[2])
        assert got == name and cls == label, line


def _check_gradcheck(command, args, proc, cwd, mnist):
    assert proc.stdout.splitlines()[-1].startswith("PASS: hand backward pass equals jax.grad")


def _check_runs(command, args, proc, cwd, mnist):
    # A row for each run folder under DIR (config.json or sweep.json), none for anything else.
    found = {p.parent.relative_to(cwd / args.dir).as_posix()
             for name in ("config.json", "sweep.json") for p in (cwd / args.dir).rglob(name)
             if "models" not in p.parts}
    rows = {line.split()[0] for line in proc.stdout.splitlines()[1:]}
    assert found and rows == found, (rows, found)


CHECKS = {"train": _check_train, "sweep": _check_sweep, "eval": _check_eval,
          "predict": _check_predict, "gradcheck": _check_gradcheck, "runs": _check_runs}
# Commands that read and write nothing: one run serves every page that shows them.
PURE = {"gradcheck", "toy"}
# Commands that only read what the page's commands made: no trace either.
READS_ONLY = {"runs"}


def _state(folder: Path) -> dict:
    """What is on disk under ``folder``: its folders, and each file's size and modification
    time (a lock taken and released leaves a folder's own time changed, nothing else)."""
    return {p: None if p.is_dir() else (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def _lanes(pages: dict, lanes: int = 2) -> list[list[str]]:
    """Pages split into ``lanes`` sequences of about equal cost. The pages that sweep share
    one lane, so that the first to compile a sweep's programs leaves them in the cache for
    the others, instead of all compiling them side by side. The pages that use runs/default
    share another, which makes it first; then come the pages with pure commands, so that the
    sweeping lane finds their output ready."""
    kind = lambda c: c.argv[1] if c.argv[0] == "jaxmlp" else "train"
    weight = {"sweep": 10, "train": 5}
    cost = {p: sum(weight.get(kind(c), 3) for c in cs) for p, cs in pages.items()}
    sweeping = [p for p in pages if any(kind(c) == "sweep" for c in pages[p])]
    # The pages that use runs/default share a lane too: it is trained there, once, first.
    default = [p for p in pages if p not in sweeping and _needs_default(pages[p])]
    if default:
        cost[default[0]] += 5
    groups = [sweeping, default] + [[p] for p in pages if p not in sweeping + default]
    result: list[list] = [[] for _ in range(lanes)]
    for group in sorted(filter(None, groups), key=lambda g: -sum(cost[p] for p in g)):
        min(result, key=lambda lane: sum(cost[p] for p in lane)).extend(group)
    for lane in result:
        lane.sort(key=lambda p: (p in sweeping, p not in default,
                                 not any(kind(c) in PURE for c in pages[p])))
    return result


def _run_page(commands, cwd: Path, env: dict, mnist, pure: dict) -> list[str]:
    """Runs one page's commands in order in ``cwd``; returns what went wrong."""
    from jaxmlp.app._cli import _build_parser

    failures = []
    for command in commands:
        argv = ["jaxmlp", *_jaxmlp_argv(command.argv)]
        before = _state(cwd)
        if argv[1] in PURE and command.run in pure:
            proc = pure[command.run]
        else:
            proc = subprocess.run([sys.executable, "-m", *argv], cwd=cwd, capture_output=True,
                                  text=True, env={**env, **command.environ}, timeout=300)
            if argv[1] in PURE:
                pure[command.run] = proc
        where = f"{command.block.where}: `{command.run}`"
        pending = PENDING.get(command.text)
        try:
            if pending:
                assert proc.returncode != 0, "now passes: remove it from PENDING"
                assert proc.returncode == 2 and pending in proc.stderr, proc.stderr[-500:]
                continue
            assert proc.returncode == command.code, (
                f"exit {proc.returncode}, not {command.code}:\n{proc.stderr[-2000:]}")
            output = (proc.stdout + proc.stderr).splitlines()
            position = 0
            for expected in command.expected:
                found = next((i for i in range(position, len(output))
                              if _matches(expected, output[i])), None)
                assert found is not None, f"output lacks {expected!r}:\n{proc.stdout[-2000:]}"
                position = found + 1
            if command.code == 0 and argv[1] in CHECKS:
                CHECKS[argv[1]](command, _build_parser().parse_args(argv[1:]), proc, cwd, mnist)
            if command.code != 0 or argv[1] in PURE | READS_ONLY:  # no trace
                assert _state(cwd) == before, "it changed what is on disk"
        except AssertionError as e:
            failures.append(f"{where}: {e}")
    return failures


def _uses_a_run(block: Block) -> bool:
    return "runs/" in block.body


def test_every_command_runs_as_documented(env, mnist, inputs, tmp_path, monkeypatch, capsys):
    """Every command run, then the Python examples that use a run folder (they need the
    same runs/default)."""
    sorted_ = classify()
    pages = {}
    for command in sorted_["run"] + sorted_["pending"]:
        pages.setdefault(command.block.page, []).append(command)
    pure = {}  # the output of each pure command, once run
    default = []  # runs/default, once made
    making = threading.Lock()  # by the first lane that needs it (the README's may sweep too)

    def run_lane(lane):
        failures = []
        for page in lane:
            folder = tmp_path / page.replace("/", "-")
            if _needs_default(pages[page]):
                with making:
                    if not default:
                        default.append(_train_default(tmp_path / "default", env))
                shutil.copytree(default[0], folder / "runs" / "default")
            for name in [*INPUTS, OWN_DATA]:
                folder.mkdir(exist_ok=True)
                shutil.copy(inputs / name, folder / name)
            shutil.copytree(inputs / OWN_FOLDER, folder / OWN_FOLDER)
            failures += _run_page(pages[page], folder, env, mnist, pure)
        return failures

    # Pages are independent (each its own folder): two lanes side by side, as many as cores.
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        failures = [f for lane in pool.map(run_lane, _lanes(pages)) for f in lane]
    assert not failures, "\n\n".join(failures)

    blocks = [b for b in sorted_["python"] if _uses_a_run(b)]
    assert blocks
    folder = tmp_path / "python"
    shutil.copytree(default[0] if default else _train_default(tmp_path / "default", env),
                    folder / "runs" / "default")
    test_acc = _last_epoch(folder / "runs" / "default")["test_acc"]
    for block in blocks:
        # A block naming a run its page's commands made (runs/sweep-b) runs where they ran.
        others = set(re.findall(r"runs/[\w.-]+", block.body)) - {"runs/default"}
        monkeypatch.chdir(tmp_path / block.page.replace("/", "-") if others else folder)
        namespace = {"__name__": "__docs__"}
        capsys.readouterr()
        exec(compile(block.body, block.where, "exec"), namespace)
        if block.page == "README.md":  # it prints the run's arch and accuracy, then 5 classes
            out = capsys.readouterr().out.splitlines()
            assert out[0] == f"{namespace['run'].arch} {test_acc}"
            predicted = np.asarray(namespace["probs"]).argmax(axis=1)
            assert out[1] == str(predicted) and namespace["probs"].shape == (5, 10)
            assert np.mean(predicted == mnist.test_labels[:5]) >= 0.8


def test_python_examples_without_data_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for block in classify()["python"]:
        if not _uses_a_run(block):
            exec(compile(block.body, block.where, "exec"), {"__name__": "__docs__"})
