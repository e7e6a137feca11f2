"""How many lines does a reader follow from ``jaxmlp train`` to one parameter update?

    python scripts/step_path.py

Prints each function on the path (``PATH``, in the order docs/step.md walks it), its
lines (the whole ``def``, docstring included) and its code lines (without the docstring,
blank lines and comment lines), then the totals and the modules they span. The math the
step calls (the softmax, the cross-entropy and the activations' rules, each a formula
with its proof in docs/math.md) is counted apart, as ``LEAVES``. Reads the source only:
nothing is imported or run.
"""
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (module, function): from the command line to optax.apply_updates, in reading order.
PATH = [
    ("jaxmlp/app/_cli.py", "_fit"),
    ("jaxmlp/app/_cli.py", "_config_from_args"),
    ("jaxmlp/_trainer.py", "train_and_evaluate"),
    ("jaxmlp/_trainer.py", "fit"),
    ("jaxmlp/_trainer.py", "_Loop.run"),
    ("jaxmlp/_trainer.py", "_One.start"),
    ("jaxmlp/_mlp.py", "init_params"),
    ("jaxmlp/_trainer.py", "_One.place"),
    ("jaxmlp/_epoch.py", "config_step"),
    ("jaxmlp/_trainer.py", "_One.train"),
    ("jaxmlp/_epoch.py", "make_epoch_runner"),
    ("jaxmlp/_epoch.py", "make_epoch"),
    ("jaxmlp/_epoch.py", "_epoch"),
    ("jaxmlp/_epoch.py", "shuffle"),
    ("jaxmlp/_epoch.py", "_scan_steps"),
    ("jaxmlp/_epoch.py", "make_step"),
    ("jaxmlp/_backprop.py", "hand_value_and_grad"),
    ("jaxmlp/_mlp.py", "forward_layers"),
    ("jaxmlp/_backprop.py", "_backward"),
    ("jaxmlp/_optim.py", "make_optimizer"),
    ("jaxmlp/_optim.py", "_optimizer"),
    ("jaxmlp/_optim.py", "schedule"),
]
# The formulas the step calls, each beside its proof (docs/math.md).
LEAVES = [
    ("jaxmlp/_cross_entropy.py", "cross_entropy"),
    ("jaxmlp/_cross_entropy.py", "cross_entropy_grad"),
    ("jaxmlp/_softmax.py", "log_softmax"),
    ("jaxmlp/_softmax.py", "softmax"),
    ("jaxmlp/_activations.py", "_relu_grad"),
    ("jaxmlp/_mlp.py", "matmul"),
    ("jaxmlp/_mlp.py", "matmul_backward"),
]


def _find(tree: ast.Module, qualname: str):
    scope = tree.body
    for part in qualname.split("."):
        node = next((n for n in scope if isinstance(n, (ast.FunctionDef, ast.ClassDef))
                     and n.name == part), None)
        if node is None:
            raise LookupError(qualname)
        scope = node.body
    return node


def measure(module: str, qualname: str) -> tuple[int, int]:
    """``(lines, code lines)`` of ``qualname`` in ``module`` (a path under the root)."""
    source = (ROOT / module).read_text()
    node = _find(ast.parse(source), qualname)
    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
    last = node.end_lineno or node.lineno
    lines = source.splitlines()[first - 1:last]
    doc = node.body[0] if (node.body and isinstance(node.body[0], ast.Expr)
                           and isinstance(node.body[0].value, ast.Constant)
                           and isinstance(node.body[0].value.value, str)) else None
    skip = set(range(doc.lineno, (doc.end_lineno or doc.lineno) + 1)) if doc else set()
    code = sum(1 for i, line in enumerate(lines, first)
               if i not in skip and line.strip() and not line.strip().startswith("#"))
    return len(lines), code


def totals(functions) -> tuple[int, int, int]:
    """``(lines, code lines, modules)`` of ``functions``."""
    figures = [measure(m, f) for m, f in functions]
    return (sum(a for a, _ in figures), sum(b for _, b in figures),
            len({m for m, _ in functions}))


def main() -> int:
    for title, functions in (("the path", PATH), ("the math it calls", LEAVES)):
        print(f"{title}:")
        for module, name in functions:
            lines, code = measure(module, name)
            print(f"  {module + ':' + name:<44} {lines:>4} lines {code:>4} code")
        lines, code, modules = totals(functions)
        what = f"total, {len(functions)} functions in {modules} modules"
        print(f"  {what:<44} {lines:>4} lines {code:>4} code")
    return 0


if __name__ == "__main__":
    sys.exit(main())
