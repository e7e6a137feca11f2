"""The ``jaxmlp`` and ``jaxmlp-train`` commands' entry points, on the standard library only.

They run before JAX, TensorFlow or anything heavy is imported, so Ctrl-C or SIGTERM at any
moment ends the command with one line and exit 130:

- while the heavy modules import, a signal is only noted, and the command stops as soon
  as the import is done (an exception raised inside a C extension's initialisation can
  leave it half-made and crash the interpreter later);
- from then on a signal raises ``KeyboardInterrupt`` wherever Python is, which the commands
  answer (a run saves and says how to resume); one that lands in a callback whose
  exceptions Python only prints ("Exception ignored in: _xla_gc_callback") is raised again
  in the main code instead of being lost;
- an interrupted command leaves with ``os._exit`` once its line is out: interpreter
  shutdown after an interrupted start of XLA's runtime can crash (SIGSEGV seen here);
  so does any process that joined a multi-process run (``jaxmlp._parallel._leave``).
"""
import _thread
import os
import signal
import sys

_noted: list[int] = []


def _note(signum, frame):
    _noted.append(signum)


def _unraisable(hook):
    def handle(unraisable):
        if issubclass(unraisable.exc_type, KeyboardInterrupt):
            _thread.interrupt_main()  # raised again where the main code can answer it
        else:
            hook(unraisable)
    return handle


def _leave(code: int) -> int:
    parallel = sys.modules.get("jaxmlp._parallel")
    if parallel is not None and parallel._joined:  # its teardown can hang: it leaves itself
        parallel._leave(code)
    if code == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    return code


def main(argv=None) -> int:
    """``jaxmlp``: the command line (``jaxmlp.app._cli.main``), interruptible from the start."""
    previous = {s: signal.signal(s, _note) for s in (signal.SIGINT, signal.SIGTERM)}
    from jaxmlp.app import _cli  # JAX, NumPy, Optax: seconds, signals only noted meanwhile

    signal.signal(signal.SIGINT, previous[signal.SIGINT])
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # as Ctrl-C: KeyboardInterrupt
    sys.unraisablehook = _unraisable(sys.unraisablehook)
    try:
        if _noted:
            raise KeyboardInterrupt
        return _leave(_cli.main(argv))  # a Ctrl-C inside a command is answered there
    except KeyboardInterrupt:  # while importing or parsing the command line
        print("jaxmlp: interrupted", file=sys.stderr)
        return _leave(130)


def train_main(argv=None) -> int:
    """``jaxmlp-train``: the same as ``jaxmlp train``."""
    return main(["train", *(sys.argv[1:] if argv is None else argv)])
