"""What on-device augmentation costs, and the same distortions done the PyTorch way.

One epoch of one network (default: simard2003's 784-800-10), batch 128, SGD, four ways:

- ``jaxmlp-plain``: the epoch scan without augmentation: the baseline.
- ``jaxmlp-augment``: the same scan, each batch distorted inside it (``--augment``).
- ``torch-per-image``: what a PyTorch user writes: a ``Dataset`` that distorts each image
  as it is read, a ``DataLoader`` (batch 128, shuffled, no worker processes: the machine
  has two cores and the training loop uses them), the model in eager mode. torchvision's
  ``v2.ElasticTransform``/``v2.RandomAffine`` cannot be installed beside the CPU build of
  torch (PyPI's torchvision wheels are built against the CUDA one), so the distortion is
  written as torchvision writes it: a uniform field blurred by a Gaussian (``conv2d``,
  kernel ``8σ + 1``), an affine grid (``affine_grid``), bilinear ``grid_sample`` with zero
  padding, per image.
- ``torch-batched``: the same distortion on the whole batch at once.

The torch drivers time ``--augment-torch-batches`` batches and scale to an epoch. Each
figure is the median of ``rounds`` calls, a ``settle`` after each (``bench.timing``).
"""
import math
import statistics
import time

import jax
import jax.numpy as jnp

from jaxmlp import TrainConfig, init_params, make_epoch, make_optimizer, make_step, parse_arch
from jaxmlp._augment import parse_augment

from bench.timing import settle


def _time(run, rounds: int) -> list[float]:
    run()  # compiles, warms caches
    settle()
    seconds = []
    for _ in range(rounds):
        begin = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - begin)
        settle()
    return seconds


def _jax_epoch(arch, images, labels, batch_size, lr, aug):
    config = TrainConfig(arch=arch, lr=lr, batch_size=batch_size)
    steps = len(labels) // batch_size
    optimizer = make_optimizer(config, steps)
    step = make_step(arch, optimizer, "hand", augment=aug, image_shape=(28, 28, 1))
    run = make_epoch(step, batch_size)
    params = init_params(jax.random.key(0), parse_arch(arch), 784)
    state = {"params": params, "opt": optimizer.init(params)}
    x, y = jnp.asarray(images), jnp.asarray(labels)
    key = [jax.random.key(1)]

    def epoch():
        key[0], k = jax.random.split(key[0])
        state["params"], state["opt"], metrics = run(state["params"], state["opt"], x, y, k,
                                                     0, steps)
        jax.block_until_ready(metrics)
    return epoch


def _torch_distort(torch, images, aug, generator):
    """torchvision's elastic and affine transforms on ``images`` ``(N, 1, H, W)``: one
    ``grid_sample`` of the affine grid plus the blurred displacement."""
    f = torch.nn.functional
    n, _, h, w = images.shape
    theta = torch.zeros(n, 2, 3)
    u = torch.rand(n, 6, generator=generator) * 2 - 1
    angle, shear = math.radians(aug.rotation) * u[:, 0], math.radians(aug.shear) * u[:, 1]
    sx, sy = 1 + aug.scale * u[:, 2], 1 + aug.scale * u[:, 3]
    cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
    # rotation @ shear @ scale, as RandomAffine composes them
    theta[:, 0, 0], theta[:, 0, 1] = cos * sx, (cos * tan - sin) * sy
    theta[:, 1, 0], theta[:, 1, 1] = sin * sx, (sin * tan + cos) * sy
    theta[:, 0, 2] = aug.translation * u[:, 4] * 2 / w
    theta[:, 1, 2] = aug.translation * u[:, 5] * 2 / h
    grid = f.affine_grid(theta, (n, 1, h, w), align_corners=False)
    if aug.alpha:
        size = int(8 * aug.sigma + 1) | 1
        x = torch.arange(size, dtype=torch.float32) - size // 2
        g = torch.exp(-0.5 * (x / aug.sigma) ** 2)
        g = g / g.sum()
        d = torch.rand(n * 2, 1, h, w, generator=generator) * 2 - 1
        d = f.conv2d(f.pad(d, (size // 2,) * 4, mode="reflect"), g.view(1, 1, 1, -1))
        d = f.conv2d(d, g.view(1, 1, -1, 1))
        grid = grid + d.view(n, 2, h, w).permute(0, 2, 3, 1) * (aug.alpha * 2 / h)
    return f.grid_sample(images, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)


def _torch_epoch(arch, images, labels, batch_size, lr, aug, batches, per_image):
    import torch

    from bench.torch_nets import net

    model = net(arch)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    pixels = torch.from_numpy(images).float().div_(255.0).view(-1, 1, 28, 28)
    targets = torch.from_numpy(labels).long()

    class Distorted(torch.utils.data.Dataset):
        def __len__(self):
            return len(targets)

        def __getitem__(self, i):
            return _torch_distort(torch, pixels[i:i + 1], aug, generator)[0], targets[i]

    loader = torch.utils.data.DataLoader(Distorted(), batch_size=batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(1))
    loss_fn = torch.nn.CrossEntropyLoss()

    def train(x, y):
        opt.zero_grad()
        loss_fn(model(x.reshape(len(x), -1)), y).backward()
        opt.step()

    def epoch():
        if per_image:
            for k, (x, y) in enumerate(loader):
                if k == batches:
                    break
                train(x, y)
        else:
            order = torch.randperm(len(targets), generator=generator)
            for k in range(batches):
                idx = order[k * batch_size:(k + 1) * batch_size]
                train(_torch_distort(torch, pixels[idx], aug, generator), targets[idx])
    return epoch


def measure(mnist, *, arch: str, spec: str, batch_size: int, lr: float, rounds: int,
            torch_batches: int, has_torch: bool) -> dict:
    aug = parse_augment(spec)
    images, labels = mnist.train_images, mnist.train_labels
    steps = len(labels) // batch_size
    result = {"arch": arch, "augment": spec, "batch_size": batch_size, "steps": steps}
    for name, a in [("jaxmlp-plain", None), ("jaxmlp-augment", aug)]:
        result[name] = _time(_jax_epoch(arch, images, labels, batch_size, lr, a), rounds)
    if has_torch:
        scale = steps / torch_batches
        for name, per_image in [("torch-per-image", True), ("torch-batched", False)]:
            run = _torch_epoch(arch, images, labels, batch_size, lr, aug, torch_batches,
                               per_image)
            result[name] = [s * scale for s in _time(run, rounds)]
    return result


def print_table(result: dict) -> None:
    med = {k: statistics.median(v) for k, v in result.items() if isinstance(v, list)}
    plain = med["jaxmlp-plain"]
    print(f"\nAugmented epoch, {result['arch']}, --augment {result['augment']}, batch "
          f"{result['batch_size']} ({result['steps']} steps), seconds per epoch, median:")
    print("| driver | s/epoch | vs jaxmlp-augment |")
    print("|---|---|---|")
    for name, s in med.items():
        print(f"| {name} | {s:.2f} | {s / med['jaxmlp-augment']:.1f}x |")
    cost = (med["jaxmlp-augment"] - plain) / plain
    print(f"augmentation costs {cost:.2f}x a plain epoch of this net (target <= 0.5x)")
