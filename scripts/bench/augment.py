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
figure is the median of ``rounds`` calls after a warm-up round, the drivers timed
round-robin, a ``settle`` after each call (``bench.timing``).
"""
import math

from jaxmlp._augment import parse_augment

from bench.epochs import make_scan
from bench.timing import print_ratios, seconds_per_call


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
    runs = {name: make_scan(arch, "hand", images, labels, batch_size, lr, rounds + 1,
                            augment=a, image_shape=(28, 28, 1)).run
            for name, a in [("jaxmlp-plain", None), ("jaxmlp-augment", aug)]}
    if has_torch:
        for name, per_image in [("torch-per-image", True), ("torch-batched", False)]:
            runs[name] = _torch_epoch(arch, images, labels, batch_size, lr, aug, torch_batches,
                                      per_image)
    scale = {name: steps / torch_batches for name in ("torch-per-image", "torch-batched")}
    return {**result, **seconds_per_call(runs, rounds, scale=scale)}


def print_table(result: dict) -> None:
    med = print_ratios(
        f"Augmented epoch, {result['arch']}, --augment {result['augment']}, batch "
        f"{result['batch_size']} ({result['steps']} steps), seconds per epoch, median:",
        {k: v for k, v in result.items() if isinstance(v, list)}, "jaxmlp-augment", 1)
    cost = (med["jaxmlp-augment"] - med["jaxmlp-plain"]) / med["jaxmlp-plain"]
    print(f"augmentation costs {cost:.2f}x a plain epoch of this net (target <= 0.5x)")
