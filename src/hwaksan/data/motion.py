"""``stick-motion``: procedurally generated 2-D stick figures doing one of eight actions.

Each sample is a 2-D skeleton of :data:`JOINTS` (15 joints, the kinematic tree :data:`PARENTS`)
seen from the side, moving for ``frames`` frames at :data:`FPS` frames per second. A sample's
action (its label, :data:`ACTIONS`) sets the joint-angle curves as functions of a phase
``phi = 2 pi c tau + phi_0`` (``tau`` = frame / frames, ``c`` cycles per clip); every sample draws
its own speed ``c``, amplitude, phase ``phi_0``, body proportions (overall height and each bone),
facing direction, position and a small low-frequency sway of every angle. Positions come from
forward kinematics over the tree; the pelvis height is set so the lower foot touches the ground
(``y = 0``), which makes walking bob and squats sink by themselves, and a jump lifts it.

Layout: ``images (N, 2 J, T)`` float32 with channel ``2 j`` the x and ``2 j + 1`` the y of joint
``j``, normalised as ``(world - center) / scale`` (:data:`NORMALISATION`, about [-1, 1]);
``modality = "motion"`` and ``modality_params`` carry the skeleton (``parents``, ``joints``), the
``fps``, the normalisation and the feet, so writers and metrics can draw and measure figures.

Determinism: sample ``i`` of a split is a function of ``(split, i)`` alone (its own NumPy
generator seeded by ``(split seed, i)``), with label ``i mod 8``; ``n`` only says how many.

``data.args`` (config ``[data] args = {...}``): ``frames`` (default 32), ``n`` (default 4096 for
train, 1024 for val / test) and the loss weights of the motion extension (``velocity_weight``,
``bone_weight``, ``foot_weight``; :mod:`hwaksan.training.motion`), which the loader accepts and
ignores so that one table configures both.

Example:
    >>> data = load_stick_motion("val", n=16, frames=32)
    >>> tuple(data.images.shape), data.class_names[int(data.labels[1])]
    ((16, 30, 32), 'run')
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .dataset import ImageDataset

__all__ = [
    "ACTIONS",
    "FEET",
    "FPS",
    "JOINTS",
    "NORMALISATION",
    "PARENTS",
    "bone_pairs",
    "load_stick_motion",
    "make_motion",
]

#: The joints of the skeleton, in channel order.
JOINTS = (
    "pelvis",
    "neck",
    "head",
    "l_shoulder",
    "l_elbow",
    "l_hand",
    "r_shoulder",
    "r_elbow",
    "r_hand",
    "l_hip",
    "l_knee",
    "l_foot",
    "r_hip",
    "r_knee",
    "r_foot",
)
#: The parent of every joint (-1 for the root, the pelvis).
PARENTS = (-1, 0, 1, 1, 3, 4, 1, 6, 7, 0, 9, 10, 0, 12, 13)
#: Indices of the two feet (contact in the foot-contact loss).
FEET = (11, 14)
#: The action classes; sample ``i`` does ``ACTIONS[i % 8]``.
ACTIONS = ("walk", "run", "jump", "wave", "squat", "kick", "punch", "bow")
#: Frames per second of the clips.
FPS = 16
#: ``world = normalised * scale + center`` (world units: a figure is about 1.5 tall, ground y = 0).
NORMALISATION = {"center": [0.0, 0.95], "scale": 1.5}

_SPLIT_SEEDS = {"train": 0x5EED_0001, "val": 0x5EED_0002, "test": 0x5EED_0003}
_DEFAULT_N = {"train": 4096, "val": 1024, "test": 1024}
# bone lengths of the average figure (world units): spine, head, upper arm, forearm, thigh, shin
_BONES = {"spine": 0.50, "head": 0.18, "upper": 0.28, "fore": 0.26, "thigh": 0.42, "shin": 0.40}
_SHOULDER_W, _HIP_W = 0.06, 0.05


def bone_pairs() -> list[tuple[int, int]]:
    """The ``(parent, child)`` joint pairs of the skeleton's 14 bones."""
    return [(p, j) for j, p in enumerate(PARENTS) if p >= 0]


def _angles(action: str, phi: np.ndarray, amp: float, rng: np.random.Generator):
    """The angle curves ``(T,)`` of one action (radians; limb angles from straight down, positive
    forward; ``trunk`` from straight up, positive leaning forward; knee / elbow flexion >= 0), the
    forward travel over the clip and the lift of the pelvis above the ground."""
    z = np.zeros_like(phi)
    s, c = np.sin(phi), np.cos(phi)
    a = {k: z.copy() for k in ("trunk", "head", "sl", "sr", "el", "er", "hl", "hr", "kl", "kr")}
    travel, lift = 0.0, z.copy()
    a["el"] += 0.25
    a["er"] += 0.25
    if action == "walk":
        a["hl"], a["hr"] = 0.45 * amp * s, -0.45 * amp * s
        a["kl"] = 0.1 + 0.6 * amp * np.clip(np.sin(phi + 2.2), 0, None)
        a["kr"] = 0.1 + 0.6 * amp * np.clip(np.sin(phi + 2.2 + np.pi), 0, None)
        a["sl"], a["sr"] = -0.4 * amp * s, 0.4 * amp * s
        a["trunk"] += 0.05
        travel = 0.2 * amp
    elif action == "run":
        a["hl"], a["hr"] = 0.2 + 0.75 * amp * s, 0.2 - 0.75 * amp * s
        a["kl"] = 0.3 + 1.2 * amp * np.clip(np.sin(phi + 2.0), 0, None)
        a["kr"] = 0.3 + 1.2 * amp * np.clip(np.sin(phi + 2.0 + np.pi), 0, None)
        a["sl"], a["sr"] = -0.8 * amp * s, 0.8 * amp * s
        a["el"] += 1.2
        a["er"] += 1.2
        a["trunk"] += 0.3
        lift = 0.05 * amp * np.abs(np.sin(phi + 0.5))
        travel = 0.3 * amp
    elif action == "jump":
        up, down = np.clip(s, 0, None), np.clip(-s, 0, None)
        a["hl"] = a["hr"] = 0.7 * amp * down
        a["kl"] = a["kr"] = 1.3 * amp * down
        a["trunk"] += 0.45 * amp * down
        a["sl"] = a["sr"] = 1.7 * amp * up - 0.6 * down
        lift = (0.12 + 0.08 * rng.random()) * amp * up
    elif action == "wave":
        side = "sl" if rng.random() < 0.5 else "sr"
        elbow = "el" if side == "sl" else "er"
        a[side] += 2.5 + 0.2 * rng.standard_normal()
        a[elbow] += 0.35 + 0.45 * amp * s
        a["head"] += 0.05 * s
    elif action == "squat":
        d = amp * 0.5 * (1 - c)
        a["hl"] = a["hr"] = 1.3 * d
        a["kl"] = a["kr"] = 2.2 * d
        a["trunk"] += 0.6 * d
        a["sl"] = a["sr"] = 1.5 * d
    elif action == "kick":
        up = np.clip(s, 0, None) ** 2
        kick, stand = ("hl", "hr") if rng.random() < 0.5 else ("hr", "hl")
        knee = "kl" if kick == "hl" else "kr"
        a[kick] = 1.4 * amp * up - 0.25 * np.clip(-s, 0, None)
        a[knee] = 1.0 * np.clip(-c, 0, None) * amp + 0.1
        a[stand] += 0.05
        a["sl"], a["sr"] = -0.5 * up, 0.6 * up
        a["trunk"] -= 0.15 * up
    elif action == "punch":
        left, right = np.clip(s, 0, None), np.clip(-s, 0, None)
        a["sl"], a["sr"] = 0.6 + 0.9 * amp * left, 0.6 + 0.9 * amp * right
        a["el"] = 2.0 * (1 - left * amp**0.5)
        a["er"] = 2.0 * (1 - right * amp**0.5)
        a["hl"], a["hr"] = 0.25, -0.15
        a["kl"] = a["kr"] = 0.2
        a["trunk"] += 0.1 + 0.1 * (left + right)
    elif action == "bow":
        d = amp * 0.5 * (1 - c)
        a["trunk"] += 1.1 * d
        a["head"] += 0.3 * d
        a["sl"] = a["sr"] = 0.4 * d
        a["hl"] = a["hr"] = -0.15 * d
    else:
        raise ValueError(f"unknown action {action!r}: choose from {ACTIONS}")
    return a, travel, lift


def make_motion(action: str, frames: int, rng: np.random.Generator) -> np.ndarray:
    """One sequence of ``action`` in world units: ``(J, 2, frames)`` (module docstring).

    Draws, from ``rng``: cycles per clip, amplitude, phase, height and bone scales, facing,
    position and a sway of every angle.
    """
    cycles = {"walk": (1.0, 2.0), "run": (1.5, 2.5), "jump": (1.0, 2.0), "wave": (2.0, 4.0)}
    lo, hi = cycles.get(action, (1.0, 2.0))
    c = rng.uniform(lo, hi)
    amp = rng.uniform(0.75, 1.25)
    phi0 = rng.uniform(0, 2 * np.pi)
    tau = np.arange(frames) / frames
    phi = 2 * np.pi * c * tau + phi0
    a, travel, lift = _angles(action, phi, amp, rng)
    for key in a:  # a slow sway of every angle: two random low-frequency sinusoids
        f = rng.uniform(0.3, 1.5, 2)
        p = rng.uniform(0, 2 * np.pi, 2)
        a[key] = a[key] + 0.04 * (
            np.sin(2 * np.pi * f[0] * tau + p[0]) + np.sin(2 * np.pi * f[1] * tau + p[1])
        )
    height = rng.uniform(0.85, 1.15)
    bone = {k: v * height * rng.uniform(0.9, 1.1) for k, v in _BONES.items()}
    facing = 1.0 if rng.random() < 0.5 else -1.0

    def limb(theta: np.ndarray) -> np.ndarray:  # direction (2, T) of a limb at angle theta
        return np.stack([facing * np.sin(theta), -np.cos(theta)])

    def up(theta: np.ndarray) -> np.ndarray:
        return np.stack([facing * np.sin(theta), np.cos(theta)])

    pos = np.zeros((len(JOINTS), 2, frames))
    pos[1] = pos[0] + bone["spine"] * up(a["trunk"])
    pos[2] = pos[1] + bone["head"] * up(a["trunk"] + a["head"])
    for sh, el, hand, sa, ea, w in ((3, 4, 5, "sl", "el", 1), (6, 7, 8, "sr", "er", -1)):
        pos[sh] = pos[1] + np.array([[w * _SHOULDER_W * height], [-0.03 * height]])
        pos[el] = pos[sh] + bone["upper"] * limb(a[sa])
        pos[hand] = pos[el] + bone["fore"] * limb(a[sa] + a[ea])
    for hip, knee, foot, ha, ka, w in ((9, 10, 11, "hl", "kl", 1), (12, 13, 14, "hr", "kr", -1)):
        pos[hip] = pos[0] + np.array([[w * _HIP_W * height], [0.0]])
        pos[knee] = pos[hip] + bone["thigh"] * limb(a[ha])
        pos[foot] = pos[knee] + bone["shin"] * limb(a[ha] - a[ka])
    # the lower foot on the ground, then the lift of a jump or a run's flight
    ground = -np.minimum(pos[11, 1], pos[14, 1]) + lift
    span = travel * c if action in ("walk", "run") else 0.0
    room = max(0.05, 0.4 - span / 2)
    x = rng.uniform(-room, room) + facing * span * (tau - 0.5)
    if action == "bow":  # the hips go back as the trunk bends
        x = x - facing * 0.12 * (a["trunk"] - a["trunk"].min())
    pos[:, 0] += x
    pos[:, 1] += ground
    return pos


def load_stick_motion(
    split: str = "train",
    frames: int = 32,
    n: int | None = None,
    velocity_weight: float = 0.0,
    bone_weight: float = 0.0,
    foot_weight: float = 0.0,
) -> ImageDataset:
    """The ``stick-motion`` set (module docstring): ``(n, 30, frames)`` in about [-1, 1].

    Args:
        split: ``"train"``, ``"val"`` or ``"test"`` (disjoint seeds).
        frames: frames per sequence (8 to 256).
        n: number of sequences (default 4096 for train, 1024 otherwise).
        velocity_weight, bone_weight, foot_weight: read by the motion training extension
            (:mod:`hwaksan.training.motion`), ignored here.

    Raises:
        ValueError: an unknown split, or ``frames`` / ``n`` out of range.
    """
    del velocity_weight, bone_weight, foot_weight
    if split not in _SPLIT_SEEDS:
        raise ValueError(f"stick-motion has the splits {sorted(_SPLIT_SEEDS)}, not {split!r}")
    if not (isinstance(frames, int) and 8 <= frames <= 256):
        raise ValueError(f"stick-motion frames must be an integer from 8 to 256, got {frames!r}")
    n = _DEFAULT_N[split] if n is None else n
    if not (isinstance(n, int) and 1 <= n <= 1_000_000):
        raise ValueError(f"stick-motion n must be an integer from 1 to 1000000, got {n!r}")
    center = np.array(NORMALISATION["center"])[None, :, None]
    out = np.empty((n, len(JOINTS), 2, frames))
    labels = np.arange(n) % len(ACTIONS)
    for i in range(n):
        rng = np.random.default_rng([_SPLIT_SEEDS[split], i])
        out[i] = (make_motion(ACTIONS[labels[i]], frames, rng) - center) / NORMALISATION["scale"]
    images = torch.from_numpy(out.reshape(n, 2 * len(JOINTS), frames)).float()
    return ImageDataset(
        images=images,
        labels=torch.from_numpy(labels).long(),
        captions=None,
        class_names=list(ACTIONS),
        name="stick-motion",
        ids=[f"stick-motion/{split}/{i}" for i in range(n)],
        modality="motion",
        modality_params=motion_params(),
    )


def motion_params() -> dict[str, Any]:
    """The ``modality_params`` of ``stick-motion`` (JSON): skeleton, fps, normalisation, feet."""
    return {
        "joints": list(JOINTS),
        "parents": list(PARENTS),
        "feet": list(FEET),
        "fps": FPS,
        "center": list(NORMALISATION["center"]),
        "scale": NORMALISATION["scale"],
    }
