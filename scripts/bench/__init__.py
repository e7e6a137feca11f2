"""``scripts/benchmark.py`` in parts: one module per measurement, one timing helper.

- ``timing``: the one timing helper (round-robin calls, a settle on idle cores after each).
- ``epochs``: one model, seconds per epoch of jaxmlp's scan against a per-step loop and
  PyTorch.
- ``startup``: ``jaxmlp train`` to a target accuracy in fresh processes (cold, then warm
  caches), process start to first step, peak memory.
- ``sweeps`` (``--sweep``): K models at once, model-epochs per second, through the
  trainer's own sweep epoch (``jaxmlp._sweep.Stack.train``), against K runs one after
  another and PyTorch; on CPU also sharded over two forced devices, in a child process.
- ``evaluation`` (``--sweep``): a sweep epoch's training against its evaluation, and the
  evaluation of all K models at once against K x 3 separate calls.
- ``torch_nets``: the PyTorch drivers both ``epochs`` and ``sweeps`` time.

No module keeps state between calls, and nothing is pickled: the 2-device child gets its
settings and returns its figures as JSON files.
"""
