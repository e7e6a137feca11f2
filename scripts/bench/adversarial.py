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
ratio to the plain epoch. The drivers are timed round-robin, each figure the median of
``rounds`` calls after a warm-up round (``bench.timing``).
"""
from bench.epochs import make_scan
from bench.timing import print_ratios, seconds_per_call

EPSILON = 0.1


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
    common = (images, labels, batch_size, lr, rounds + 1)
    runs = {name: make_scan(arch, grad, *common, adversarial=epsilon).run
            for name, epsilon, grad in [("jaxmlp-plain", 0.0, "hand"),
                                        ("jaxmlp-adversarial", EPSILON, "hand"),
                                        ("jaxmlp-adversarial-autodiff", EPSILON, "autodiff")]}
    batches = min(torch_batches, steps)
    if has_torch:
        runs["torch-adversarial"] = _torch_epoch(arch, images, labels, batch_size, lr, EPSILON,
                                                 batches)
    return {**result, **seconds_per_call(runs, rounds,
                                         scale={"torch-adversarial": steps / batches})}


def print_table(result: dict) -> None:
    med = print_ratios(
        f"Adversarial epoch, {result['arch']}, --adversarial {result['epsilon']}, batch "
        f"{result['batch_size']} ({result['steps']} steps), seconds per epoch, median:",
        {k: v for k, v in result.items() if isinstance(v, list)}, "jaxmlp-plain", 2)
    print(f"adversarial training costs {med['jaxmlp-adversarial'] / med['jaxmlp-plain']:.2f}x "
          f"a plain epoch of this net (two passes: about 2x)")
