"""What adversarial training (``--adversarial``, Goodfellow et al. 2015) costs an epoch.

One epoch of one network (default: 784-1200-1200-10), SGD, the fast gradient sign step
ε = 0.1, four ways:

- ``jaxmlp-plain``: the epoch scan without it: the baseline.
- ``jaxmlp-adversarial``: the hand pass, whose own ``∂J/∂x`` makes ``x̃``, and a second pass.
- ``jaxmlp-adversarial-autodiff``: the same objective by ``jax.grad`` (``--grad autodiff``).
- ``torch-adversarial``: what a PyTorch user writes: ``x.requires_grad_()``, a forward and
  ``torch.autograd.grad`` for ``∂J/∂x``, then the objective's forward and backward at ``x``
  and ``x̃`` (eager, ``--adversarial-torch-batches`` batches scaled to an epoch).

A step of two passes should cost about twice a plain one: the report prints each driver's
ratio to the plain epoch. Each figure is the median of ``rounds`` calls (``bench.timing``).
"""
import statistics

import jax
import jax.numpy as jnp

from jaxmlp import TrainConfig, init_params, make_epoch, make_optimizer, make_step, parse_arch

from bench.augment import _time

EPSILON = 0.1


def _jax_epoch(arch, images, labels, batch_size, lr, epsilon, grad):
    config = TrainConfig(arch=arch, lr=lr, batch_size=batch_size)
    steps = len(labels) // batch_size
    optimizer = make_optimizer(config, steps)
    run = make_epoch(make_step(arch, optimizer, grad, adversarial=epsilon), batch_size)
    params = init_params(jax.random.key(0), parse_arch(arch), 784)
    state = {"params": params, "opt": optimizer.init(params)}
    x, y = jnp.asarray(images), jnp.asarray(labels)

    def epoch():
        state["params"], state["opt"], metrics = run(state["params"], state["opt"], x, y,
                                                     jax.random.key(1), 0, steps)
        jax.block_until_ready(metrics)
    return epoch


def _torch_epoch(arch, images, labels, batch_size, lr, epsilon, batches):
    import torch

    from bench.torch_nets import net

    model = net(arch)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    pixels = torch.from_numpy(images[:batches * batch_size]).float().div_(255.0)
    targets = torch.from_numpy(labels[:batches * batch_size]).long()
    loss_fn = torch.nn.CrossEntropyLoss()

    def epoch():
        for i in range(batches):
            x = pixels[i * batch_size:(i + 1) * batch_size].clone().requires_grad_()
            y = targets[i * batch_size:(i + 1) * batch_size]
            (dx,) = torch.autograd.grad(loss_fn(model(x), y), x)
            x_adv = (x.detach() + epsilon * dx.sign()).clamp_(0, 1)
            opt.zero_grad()
            ((loss_fn(model(x.detach()), y) + loss_fn(model(x_adv), y)) / 2).backward()
            opt.step()
    return epoch


def measure(mnist, *, arch: str, batch_size: int, lr: float, rounds: int,
            torch_batches: int, has_torch: bool) -> dict:
    images, labels = mnist.train_images, mnist.train_labels
    steps = len(labels) // batch_size
    result = {"arch": arch, "epsilon": EPSILON, "batch_size": batch_size, "steps": steps}
    for name, epsilon, grad in [("jaxmlp-plain", 0.0, "hand"),
                                ("jaxmlp-adversarial", EPSILON, "hand"),
                                ("jaxmlp-adversarial-autodiff", EPSILON, "autodiff")]:
        result[name] = _time(_jax_epoch(arch, images, labels, batch_size, lr, epsilon, grad),
                             rounds)
    if has_torch:
        batches = min(torch_batches, steps)
        run = _torch_epoch(arch, images, labels, batch_size, lr, EPSILON, batches)
        result["torch-adversarial"] = [s * steps / batches for s in _time(run, rounds)]
    return result


def print_table(result: dict) -> None:
    med = {k: statistics.median(v) for k, v in result.items() if isinstance(v, list)}
    plain = med["jaxmlp-plain"]
    print(f"\nAdversarial epoch, {result['arch']}, --adversarial {result['epsilon']}, batch "
          f"{result['batch_size']} ({result['steps']} steps), seconds per epoch, median:")
    print("| driver | s/epoch | vs jaxmlp-plain |")
    print("|---|---|---|")
    for name, s in med.items():
        print(f"| {name} | {s:.2f} | {s / plain:.2f}x |")
    print(f"adversarial training costs {med['jaxmlp-adversarial'] / plain:.2f}x a plain epoch "
          f"of this net (two passes: about 2x)")
