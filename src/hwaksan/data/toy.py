"""Two-dimensional toy data sets, standardised, with exact densities where they are known.

Every set is a fixed affine image of a "raw" generator, ``x = (x_raw - shift) / scale`` per axis,
where ``shift`` and ``scale`` are the *exact* mean and standard deviation of the raw distribution
(derived in closed form below, not estimated from a sample). Every set therefore has mean 0 and
standard deviation 1 per axis, exactly in distribution (the axes may be correlated).

==============  ==========================================================================  =======
name            raw generator                                                               density
==============  ==========================================================================  =======
moons           ``sklearn.datasets.make_moons(noise=0.05)``                                 no
swiss_roll      ``sklearn.datasets.make_swiss_roll(noise=0.5)``, columns 0 and 2            no
circles         ``sklearn.datasets.make_circles(noise=0.05, factor=0.5)``                   no
s_curve         ``sklearn.datasets.make_s_curve(noise=0.05)``, columns 0 and 2              no
8gaussians      8 isotropic Gaussians (std 0.5) on the circle of radius 4                   yes
checkerboard    uniform on the 8 "black" unit squares of a 4x4 board on [-2, 2]^2           yes
spiral          two interleaved Archimedean arms ``r = theta``, plus Gaussian noise 0.3     no
gmm             a fixed 4-component mixture of anisotropic, rotated Gaussians               yes
==============  ==========================================================================  =======

Randomness: ``sample(n, generator)`` takes a ``torch.Generator`` (advanced by the call), an ``int``
seed, or ``None`` (torch's global RNG). The scikit-learn generators receive an integer
``random_state`` drawn from that torch generator, so torch seeding alone makes every set
reproducible. Note that scikit-learn's ``make_moons`` and ``make_circles`` place their points on an
evenly spaced grid of angles (stratified, not i.i.d.; only the shuffle and the noise are random).

Example:
    >>> ds = get_toy_dataset("8gaussians")
    >>> x = ds.sample(5, torch.Generator().manual_seed(0))
    >>> x.shape, x.dtype, ds.log_prob(x).dtype
    (torch.Size([5, 2]), torch.float32, torch.float64)
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn import datasets as skd

from ..distributions import GaussianMixture

__all__ = ["TOY_DATASETS", "ToyDataset", "get_toy_dataset"]

SeedLike = torch.Generator | int | None

TOY_DATASETS: tuple[str, ...] = (
    "moons",
    "swiss_roll",
    "circles",
    "s_curve",
    "8gaussians",
    "checkerboard",
    "spiral",
    "gmm",
)


def _torch_generator(generator: SeedLike) -> torch.Generator | None:
    if isinstance(generator, int):
        return torch.Generator().manual_seed(generator)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, an int seed or None, got {generator!r}")
    return generator


def _sklearn_seed(generator: torch.Generator | None) -> int:
    """An integer ``random_state`` for scikit-learn, drawn from (and advancing) ``generator``."""
    return int(torch.randint(0, 2**31 - 1, (), generator=generator))


def _check_n(n: int) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    return n


def _as_points(x: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(x).to(torch.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"expected points of shape (n, 2), got {tuple(x.shape)}")
    return x


class ToyDataset:
    """A 2-D data set: a sampler, and the exact log-density where it is known.

    Attributes:
        name: the registry name (one of :data:`TOY_DATASETS`).
        dim: data dimension, always 2.
        has_density: whether :meth:`log_prob` is available.
        mixture: the :class:`~hwaksan.distributions.GaussianMixture` the data are drawn from, in the
            standardised coordinates (``None`` for sets that are not Gaussian mixtures).
        shift: ``(2,)`` float64 raw mean (``x = (x_raw - shift) / scale``).
        scale: ``(2,)`` float64 raw standard deviation.
    """

    dim: int = 2

    def __init__(self, name: str, shift: tuple[float, float], scale: tuple[float, float]) -> None:
        self.name = name
        self.shift = torch.tensor(shift, dtype=torch.float64)
        self.scale = torch.tensor(scale, dtype=torch.float64)
        self.mixture: GaussianMixture | None = None

    @property
    def has_density(self) -> bool:
        return False

    def _sample_raw(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        """``(n, 2)`` float64 raw samples (before standardisation); ``n >= 1``."""
        raise NotImplementedError

    def _sample64(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        return (self._sample_raw(n, generator) - self.shift) / self.scale

    def sample(self, n: int, generator: SeedLike = None) -> torch.Tensor:
        """Draw ``n`` standardised samples.

        Args:
            n: number of samples (``>= 0``).
            generator: a ``torch.Generator`` (advanced by the call), an integer seed, or ``None``
                for torch's global RNG.

        Returns:
            ``(n, 2)`` float32 tensor on the CPU.
        """
        n = _check_n(n)
        if n == 0:
            return torch.empty(0, 2, dtype=torch.float32)
        return self._sample64(n, _torch_generator(generator)).to(torch.float32)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log-density of the standardised data at ``x``.

        Args:
            x: ``(n, 2)`` points (any float dtype).

        Returns:
            ``(n,)`` float64 log-densities (``-inf`` off the support).

        Raises:
            NotImplementedError: for sets whose density is not known in closed form.
        """
        raise NotImplementedError(f"toy data set {self.name!r} has no closed-form density")

    def __repr__(self) -> str:
        return f"ToyDataset(name={self.name!r}, dim={self.dim}, has_density={self.has_density})"


class _SklearnCurve(ToyDataset):
    """A scikit-learn generator, restricted to two columns and standardised."""

    def __init__(self, name, make, columns, noise, shift, scale):
        super().__init__(name, shift, scale)
        self._make = make
        self._columns = list(columns)
        self.noise = noise

    def _sample_raw(self, n, generator):
        out = self._make(n, noise=self.noise, random_state=_sklearn_seed(generator))
        x = np.asarray(out[0], dtype=np.float64)[:, self._columns]
        return torch.from_numpy(np.ascontiguousarray(x))


class _Spiral(ToyDataset):
    """Two interleaved arms ``+/- theta (cos theta, sin theta)``, ``theta = T sqrt(U)``, plus noise.

    ``theta = T sqrt(U)`` (density ``2 theta / T^2`` on ``[0, T]``) spreads the points roughly
    uniformly in arc length (the arc length of ``r = theta`` grows like ``theta^2 / 2``).
    """

    def __init__(self, turns_angle: float, noise: float):
        big_t = turns_angle

        # E[theta^2 cos^2 theta] = (1/T^2) int_0^T theta^3 (1 + cos 2 theta) d theta
        #                        = T^2 / 4 + c / T^2,   c = int_0^T theta^3 cos 2 theta d theta,
        # with the antiderivative H = th^3 sin2th/2 + 3 th^2 cos2th/4 - 3 th sin2th/4 - 3 cos2th/8.
        def h(th):
            s, c = math.sin(2 * th), math.cos(2 * th)
            return th**3 * s / 2 + 3 * th**2 * c / 4 - 3 * th * s / 4 - 3 * c / 8

        c = h(big_t) - h(0.0)
        var_x = big_t**2 / 4 + c / big_t**2 + noise**2
        var_y = big_t**2 / 4 - c / big_t**2 + noise**2
        # the two arms are mirror images through the origin, so the mean is exactly 0
        super().__init__("spiral", (0.0, 0.0), (math.sqrt(var_x), math.sqrt(var_y)))
        self.turns_angle = big_t
        self.noise = noise

    def _sample_raw(self, n, generator):
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        arm = torch.randint(0, 2, (n,), generator=generator, dtype=torch.float64) * 2 - 1
        eps = torch.randn(n, 2, generator=generator, dtype=torch.float64)
        theta = self.turns_angle * u.sqrt()
        curve = torch.stack([theta * theta.cos(), theta * theta.sin()], dim=1)
        return arm[:, None] * curve + self.noise * eps


class _Mixture(ToyDataset):
    """A Gaussian mixture given directly in standardised coordinates."""

    def __init__(self, name: str, mixture: GaussianMixture, shift, scale):
        super().__init__(name, shift, scale)
        self.mixture = mixture

    @property
    def has_density(self) -> bool:
        return True

    def _sample64(self, n, generator):
        return self.mixture.sample(n, generator)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self.mixture.log_prob(_as_points(x))


class _Checkerboard(ToyDataset):
    """Uniform on the 8 squares ``(i, j)``, ``i + j`` even, of a 4x4 board of side ``4 c``.

    Raw board: unit squares on ``[-2, 2]^2``; each axis marginal is ``U[-2, 2]`` (every column and
    row holds two black squares), variance ``16 / 12 = 4 / 3``. Scaling by ``c = sqrt(3) / 2`` gives
    squares of side ``c`` on ``[-sqrt 3, sqrt 3]^2``, marginals ``U[-sqrt 3, sqrt 3]`` (mean 0,
    variance 1) and density ``1 / (8 c^2) = 1 / 6`` on the support.
    """

    side = math.sqrt(3.0) / 2

    def __init__(self):
        super().__init__("checkerboard", (0.0, 0.0), (2 / math.sqrt(3.0), 2 / math.sqrt(3.0)))
        i, j = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")
        black = (i + j) % 2 == 0
        self._cells = torch.stack([i[black], j[black]], dim=1).to(torch.float64)  # (8, 2)

    @property
    def has_density(self) -> bool:
        return True

    @property
    def area(self) -> float:
        """Area of the support in standardised coordinates (6)."""
        return 8 * self.side**2

    def _draw(self, n, generator):
        """Lower-left corners ``(n, 2)`` of the chosen squares and the points, both float64."""
        k = torch.randint(0, 8, (n,), generator=generator)
        u = torch.rand(n, 2, generator=generator, dtype=torch.float64)
        corner = (self._cells[k] - 2.0) * self.side
        return corner, corner + u * self.side

    def _sample64(self, n, generator):
        return self._draw(n, generator)[1]

    def sample(self, n: int, generator: SeedLike = None) -> torch.Tensor:
        n = _check_n(n)
        if n == 0:
            return torch.empty(0, 2, dtype=torch.float32)
        lo, x64 = self._draw(n, _torch_generator(generator))
        # Float32 rounding could move a point lying within one ulp of an edge onto the adjacent
        # white square. Clamp each coordinate to the float32 numbers strictly inside its own square
        # (a move of at most one float32 ulp), so that every sample has log_prob = -log(6).
        lo32 = torch.nextafter(lo.to(torch.float32), torch.tensor(math.inf))
        hi32 = torch.nextafter((lo + self.side).to(torch.float32), torch.tensor(-math.inf))
        return torch.minimum(torch.maximum(x64.to(torch.float32), lo32), hi32)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        x = _as_points(x)
        idx = torch.floor(x / self.side) + 2  # cell index 0..3 on the board
        on_board = ((idx >= 0) & (idx <= 3)).all(dim=1)
        black = (idx.sum(dim=1) % 2) == 0
        return torch.where(
            on_board & black,
            torch.full_like(x[:, 0], -math.log(self.area)),
            torch.full_like(x[:, 0], -math.inf),
        )


def _rotated_cov(sd_major: float, sd_minor: float, angle: float) -> list[list[float]]:
    c, s = math.cos(angle), math.sin(angle)
    a, b = sd_major**2, sd_minor**2
    return [[a * c * c + b * s * s, (a - b) * c * s], [(a - b) * c * s, a * s * s + b * c * c]]


def _standardised(mixture: GaussianMixture) -> tuple[GaussianMixture, list, list]:
    """The mixture of ``(x - m) / s``, ``m`` its exact mean and ``s`` its exact per-axis std."""
    m = mixture.mean()
    s = mixture.covariance().diagonal().sqrt()
    covs = mixture.covs / (s[:, None] * s[None, :])
    scaled = GaussianMixture((mixture.means - m) / s, covs, mixture.weights)
    return scaled, m.tolist(), s.tolist()


def _eight_gaussians() -> _Mixture:
    """Means ``r (cos 2 pi k / 8, sin 2 pi k / 8)``, ``r = 4``, std ``0.5``, equal weights.

    Per-axis variance ``r^2 / 2 + 0.5^2 = 8.25`` (``sum_k cos^2(2 pi k / 8) = 4``) and the mean and
    the cross-covariance vanish, so the standardised mixture has means scaled by ``1 / sqrt(8.25)``
    and std ``0.5 / sqrt(8.25)``.
    """
    r, sd = 4.0, 0.5
    c = 1.0 / math.sqrt(r**2 / 2 + sd**2)
    ang = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    means = r * c * torch.stack([ang.cos(), ang.sin()], dim=1)
    return _Mixture("8gaussians", GaussianMixture(means, (sd * c) ** 2), (0.0, 0.0), (1 / c, 1 / c))


def _gmm() -> _Mixture:
    """A fixed 4-component anisotropic mixture, standardised exactly (see :func:`_standardised`)."""
    means = [[-2.0, -1.0], [1.5, 2.0], [2.5, -1.5], [-1.0, 2.5]]
    covs = [
        _rotated_cov(0.8, 0.2, math.pi / 6),
        _rotated_cov(0.6, 0.15, -math.pi / 4),
        _rotated_cov(0.7, 0.25, 2 * math.pi / 5),
        _rotated_cov(0.5, 0.2, -math.pi / 10),
    ]
    weights = [0.35, 0.25, 0.25, 0.15]
    return _Mixture("gmm", *_standardised(GaussianMixture(means, covs, weights)))


def _moons() -> _SklearnCurve:
    # Outer arc (cos u, sin u), inner arc (1 - cos u, 1/2 - sin u), u ~ U[0, pi], half the points
    # each. E x = (0 + 1) / 2, E y = (2/pi + 1/2 - 2/pi) / 2 = 1/4;
    # E x^2 = (1/2 + 3/2) / 2 = 1, E y^2 = (1/2 + 3/4 - 2/pi) / 2 = 5/8 - 1/pi.
    noise = 0.05
    var_x = 1.0 - 0.25 + noise**2
    var_y = 5 / 8 - 1 / math.pi - 1 / 16 + noise**2
    return _SklearnCurve(
        "moons", skd.make_moons, (0, 1), noise, (0.5, 0.25), (math.sqrt(var_x), math.sqrt(var_y))
    )


def _circles() -> _SklearnCurve:
    # Radii 1 and f = 1/2 with half the points each, angle uniform: mean 0,
    # E x^2 = E y^2 = (1 + f^2) / 4.
    noise, factor = 0.05, 0.5
    std = math.sqrt((1 + factor**2) / 4 + noise**2)

    def make(n, noise, random_state):
        return skd.make_circles(n, noise=noise, factor=factor, random_state=random_state)

    return _SklearnCurve("circles", make, (0, 1), noise, (0.0, 0.0), (std, std))


def _swiss_roll() -> _SklearnCurve:
    # (t cos t, t sin t), t ~ U[3 pi / 2, 9 pi / 2]:
    # E t cos t = 2, E t sin t = 2 / (3 pi), E t^2 cos^2 t = 39 pi^2 / 8 - 1/4,
    # E t^2 sin^2 t = 39 pi^2 / 8 + 1/4.
    noise = 0.5
    mx, mz = 2.0, 2 / (3 * math.pi)
    var_x = 39 * math.pi**2 / 8 - 0.25 - mx**2 + noise**2
    var_z = 39 * math.pi**2 / 8 + 0.25 - mz**2 + noise**2
    return _SklearnCurve(
        "swiss_roll",
        skd.make_swiss_roll,
        (0, 2),
        noise,
        (mx, mz),
        (math.sqrt(var_x), math.sqrt(var_z)),
    )


def _s_curve() -> _SklearnCurve:
    # (sin t, sign(t) (cos t - 1)), t ~ U[-3 pi / 2, 3 pi / 2]: both coordinates are odd in t, so
    # the mean is 0; E sin^2 t = E cos^2 t = 1/2 (three half-periods), E cos t = -2 / (3 pi), so
    # E (cos t - 1)^2 = 3/2 + 4 / (3 pi).
    noise = 0.05
    var_x = 0.5 + noise**2
    var_z = 1.5 + 4 / (3 * math.pi) + noise**2
    return _SklearnCurve(
        "s_curve", skd.make_s_curve, (0, 2), noise, (0.0, 0.0), (math.sqrt(var_x), math.sqrt(var_z))
    )


_BUILDERS = {
    "moons": _moons,
    "swiss_roll": _swiss_roll,
    "circles": _circles,
    "s_curve": _s_curve,
    "8gaussians": _eight_gaussians,
    "checkerboard": _Checkerboard,
    "spiral": lambda: _Spiral(3 * math.pi, 0.3),
    "gmm": _gmm,
}


def get_toy_dataset(name: str) -> ToyDataset:
    """Build the toy data set called ``name``.

    Args:
        name: one of :data:`TOY_DATASETS`.

    Returns:
        A fresh :class:`ToyDataset`.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones).
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown toy data set {name!r}; valid names: {', '.join(TOY_DATASETS)}")
    return _BUILDERS[name]()
