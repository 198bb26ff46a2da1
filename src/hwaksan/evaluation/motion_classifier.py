"""A held-out action classifier of motion sequences, trained by this project on real training data.

The class accuracy of class-conditional samples (MDM, Tevet et al. 2023, sec. 5.2, reports the
accuracy of an action-recognition model on generated motions) needs a classifier that never saw
the generator: :func:`train_motion_classifier` fits :class:`MotionClassifier`, a small 1-D
convolutional network over time, on the *training* sequences of a data set, and
:func:`classifier_accuracy` measures it on the validation sequences (its own floor: what "right" is
worth on real data) and on samples.

    x (N, 2 J, T) -> 3 x [Conv1d, GELU] (strides 1, 2, 2) -> mean and max over time -> Linear

Training is deterministic (``seed``) and takes seconds on a CPU for the default 600 steps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MotionClassifier", "classifier_accuracy", "train_motion_classifier"]


class MotionClassifier(nn.Module):
    """Action logits ``(N, num_classes)`` of motions ``(N, D, T)`` (module docstring)."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 64) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv1d(in_channels, width, 5, padding=2),
            nn.GELU(),
            nn.Conv1d(width, width, 5, stride=2, padding=2),
            nn.GELU(),
            nn.Conv1d(width, 2 * width, 3, stride=2, padding=1),
            nn.GELU(),
        )
        self.head = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.convs(x)
        return self.head(torch.cat([h.mean(-1), h.amax(-1)], dim=1))


@torch.enable_grad()  # an evaluation under no_grad may train it
def train_motion_classifier(
    x: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    steps: int = 600,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
) -> MotionClassifier:
    """Fit a :class:`MotionClassifier` to motions ``x (N, D, T)`` with ``labels (N,)`` (AdamW,
    cosine learning rate, cross-entropy); returns it in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = MotionClassifier(x.shape[1], num_classes)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    x, labels = x.float(), labels.long()
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (batch_size,), generator=g)
        loss = F.cross_entropy(net(x[idx]), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


@torch.no_grad()
def classifier_accuracy(net: MotionClassifier, x: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of motions ``x (N, D, T)`` whose predicted class is ``labels (N,)``."""
    pred = torch.cat([net(chunk.float()).argmax(1) for chunk in x.split(512)])
    return float((pred == labels.long()).double().mean())
