"""The PyTorch drivers, the same network, optimizer (SGD, momentum 0.9, cosine) and batch as
jaxmlp's, for the epoch benchmark (``make_torch``) and the sweep benchmark
(``make_torch_sequential``, ``make_torch_func``, ``one_thread``).

Only imported when torch is importable (``pip install -e ".[torch]"``; never a hard
dependency of jaxmlp). Each ``make_*`` returns a ``bench.timing.Driver``.
"""
import copy

import torch

from jaxmlp._arch import parse_arch
from jaxmlp._data import MNIST

from bench.timing import Driver


def version() -> str:
    return torch.__version__


def threads() -> int:
    return torch.get_num_threads()


class LeCunTanh(torch.nn.Module):
    """LeCun's scaled tanh, ``A·tanh(S·z)`` with jaxmlp's constants."""

    def forward(self, z):
        from jaxmlp._activations import LECUN_A, LECUN_S

        return LECUN_A * torch.tanh(LECUN_S * z)


def net(arch: str, seed: int = 0) -> torch.nn.Sequential:
    """The same network in PyTorch (its default init), seeded."""
    torch.manual_seed(seed)
    layers, fan_in = [], MNIST.in_dim
    acts = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid,
            "linear": torch.nn.Identity, "lecun_tanh": LeCunTanh}
    for units, activation in parse_arch(arch):
        layers += [torch.nn.Linear(fan_in, units), acts[activation]()]
        fan_in = units
    return torch.nn.Sequential(*layers)


def tensors(images, labels):
    """The images as float tensors in [0, 1] and int64 labels, preloaded."""
    return torch.from_numpy(images).float().div_(255.0), torch.from_numpy(labels).long()


def make_torch(arch: str, images, labels, batch_size: int, lr: float, total_calls: int, *,
               steps=None, seed: int = 0, preloaded=None, autocast: bool = False) -> Driver:
    """PyTorch eager with the whole dataset preloaded as float tensors.

    ``run`` trains ``steps`` steps (default: a whole epoch of the images) of one shuffled
    order; the cosine schedule spans ``total_calls`` such calls. ``preloaded`` shares one
    ``tensors`` copy of the data between several models. ``autocast``: the forward under
    ``torch.autocast("cpu", torch.bfloat16)`` (PyTorch's mixed precision; its backward
    follows the forward's dtypes)."""
    model = net(arch, seed)
    steps = steps or len(labels) // batch_size
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps * total_calls)
    x, y = preloaded or tensors(images, labels)

    def run():
        order = torch.randperm(len(y))
        for i in range(steps):
            idx = order[i * batch_size:(i + 1) * batch_size]
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                logits = model(x[idx])
            loss = torch.nn.functional.cross_entropy(logits.float(), y[idx])
            loss.backward()
            optimizer.step()
            schedule.step()

    return Driver(run)


def make_torch_sequential(arch: str, k: int, images, labels, batch_size: int, lr: float,
                          steps: int, calls: int) -> Driver:
    """PyTorch eager, K models one after another (``make_torch``'s loop), one data copy."""
    preloaded = tensors(images, labels)
    runs = [make_torch(arch, images, labels, batch_size, lr, calls, steps=steps, seed=seed,
                       preloaded=preloaded).run for seed in range(k)]

    def run():
        for one in runs:
            one()

    return Driver(run)


def make_torch_func(arch: str, k: int, images, labels, batch_size: int, lr: float, steps: int,
                    calls: int) -> Driver:
    """PyTorch's model ensembling: ``stack_module_state`` + ``functional_call`` under
    ``torch.vmap`` of ``torch.func.grad_and_value``, every model on the same batch (the
    analogue of jaxmlp's shared order); torch's SGD (momentum 0.9, cosine) on the stacked
    params."""
    from torch.func import functional_call, grad_and_value, stack_module_state

    nets = [net(arch, seed) for seed in range(k)]
    params, buffers = stack_module_state(nets)
    base = copy.deepcopy(nets[0]).to("meta")

    def loss(params, buffers, x, y):
        return torch.nn.functional.cross_entropy(functional_call(base, (params, buffers), (x,)), y)

    grads_and_losses = torch.vmap(grad_and_value(loss), in_dims=(0, 0, None, None))
    optimizer = torch.optim.SGD(list(params.values()), lr=lr, momentum=0.9)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps * calls)
    x, y = tensors(images, labels)

    def run():
        order = torch.randperm(len(y))
        for i in range(steps):
            idx = order[i * batch_size:(i + 1) * batch_size]
            grads, _ = grads_and_losses(params, buffers, x[idx], y[idx])
            for name, p in params.items():
                p.grad = grads[name]
            optimizer.step()
            schedule.step()

    return Driver(run)


def one_thread(driver: Driver) -> Driver:
    """The driver with PyTorch on one thread during its calls. Torch's default (one OpenMP
    thread per core) stalls at every parallel region when another process holds a core,
    which on a shared machine can make a step a hundred times slower; one thread cannot."""
    def run():
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            driver.run()
        finally:
            torch.set_num_threads(before)

    return Driver(run, driver.compile_seconds, driver.info)
