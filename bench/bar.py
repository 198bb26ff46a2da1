"""The sampler bar, decided with paired statistics (bench/samplers.py calls this).

At NFE 5, 10 and 20, on each problem, hwaksan's best deterministic sampler must have at most half
the ODE error of the best peer sampler (the peer with the lowest ODE error at that NFE), and a
distribution distance no worse than that peer's. Both samplers start from the *same* initial noise,
so their samples are paired; the distribution clause compares them with a paired bootstrap:

- SW: the sliced Wasserstein-2 distance to a reference of ``REF_FACTOR x n`` true samples, with
  the same ``N_PROJECTIONS`` directions and the same reference for both samplers;
- NLL gap: ``|mean_i -log p(x_i) - H|``, the distance of the samples' mean negative log-likelihood
  under the true mixture from the mixture's entropy ``H`` (estimated from ``N_ENTROPY`` true
  samples; its standard error is given and is far below the differences).

For each, ``delta = metric(ours) - metric(peer)`` and its standard error is the standard deviation
of ``delta`` over ``N_BOOT`` bootstrap replicates that resample the sample indices jointly for
both samplers (the pairing) and the reference independently. "No worse" means
``delta <= 2 SE``: ours is not worse by more than twice the standard error of the paired
difference (a one-sided test at about 2.3 %). The bar is met when the error ratio is <= 0.5 and
both distribution checks pass.
"""

from __future__ import annotations

import math

import torch

N_PROJECTIONS = 256
REF_FACTOR = 4
N_BOOT = 200
N_ENTROPY = 100_000
TOLERANCE_SE = 2.0


class PairedReference:
    """The fixed pieces of one problem's comparison: projection directions, a large true sample
    (projected and sorted) and the entropy estimate."""

    def __init__(self, mixture, n: int, seed: int = 0) -> None:
        d = mixture.dim
        g = torch.Generator().manual_seed(seed + 101)
        u = torch.randn(d, N_PROJECTIONS, generator=g, dtype=torch.float64)
        self.directions = u / u.norm(dim=0, keepdim=True)
        self.n = n
        ref = mixture.sample(REF_FACTOR * n, torch.Generator().manual_seed(seed + 102)).double()
        self.ref_proj = ref @ self.directions  # (k n, P)
        self.mixture = mixture
        big = mixture.sample(N_ENTROPY, torch.Generator().manual_seed(seed + 103)).double()
        nll = -mixture.log_prob(big)
        self.entropy = float(nll.mean())
        self.entropy_se = float(nll.std() / math.sqrt(N_ENTROPY))

    def _sw(self, proj_sorted: torch.Tensor, ref_sorted: torch.Tensor) -> torch.Tensor:
        """SW_2 between ``n`` projected samples and ``k n`` reference points, both sorted per column:
        the quantile step of sample ``i`` covers reference points ``i k .. i k + k - 1`` exactly."""
        diff = proj_sorted.repeat_interleave(REF_FACTOR, dim=0) - ref_sorted
        return diff.square().mean().sqrt()

    def compare(self, ours: torch.Tensor, peer: torch.Tensor, seed: int = 0) -> dict:
        """Paired comparison of two ``(n, D)`` sample sets drawn from the same initial noise."""
        if ours.shape != peer.shape or ours.shape[0] != self.n:
            raise ValueError(f"need two paired ({self.n}, D) sample sets, got {ours.shape} and {peer.shape}")
        ours, peer = ours.double().reshape(self.n, -1), peer.double().reshape(self.n, -1)
        if not (bool(torch.isfinite(ours).all()) and bool(torch.isfinite(peer).all())):
            return {"sw_ok": False, "nll_ok": False, "note": "non-finite samples"}
        pa, pb = ours @ self.directions, peer @ self.directions
        nll_a, nll_b = -self.mixture.log_prob(ours), -self.mixture.log_prob(peer)
        ref_sorted = self.ref_proj.sort(dim=0).values

        def stats(idx_a, ref_sorted_b):
            sw_a = self._sw(pa[idx_a].sort(dim=0).values, ref_sorted_b)
            sw_b = self._sw(pb[idx_a].sort(dim=0).values, ref_sorted_b)
            gap_a = (nll_a[idx_a].mean() - self.entropy).abs()
            gap_b = (nll_b[idx_a].mean() - self.entropy).abs()
            return float(sw_a), float(sw_b), float(gap_a), float(gap_b)

        full = torch.arange(self.n)
        sw_a, sw_b, gap_a, gap_b = stats(full, ref_sorted)
        g = torch.Generator().manual_seed(seed + 104)
        d_sw, d_gap = [], []
        m = self.ref_proj.shape[0]
        for _ in range(N_BOOT):
            idx = torch.randint(0, self.n, (self.n,), generator=g)
            jdx = torch.randint(0, m, (m,), generator=g)
            a, b, ga, gb = stats(idx, self.ref_proj[jdx].sort(dim=0).values)
            d_sw.append(a - b)
            d_gap.append(ga - gb)
        se_sw = float(torch.tensor(d_sw).std())
        se_gap = float(torch.tensor(d_gap).std())
        return {
            "sw": sw_a,
            "sw_peer": sw_b,
            "sw_delta": sw_a - sw_b,
            "sw_se": se_sw,
            "sw_ok": sw_a - sw_b <= TOLERANCE_SE * se_sw,
            "nll": float(nll_a.mean()),
            "nll_peer": float(nll_b.mean()),
            "nll_gap": gap_a,
            "nll_gap_peer": gap_b,
            "nll_gap_delta": gap_a - gap_b,
            "nll_gap_se": se_gap,
            "nll_ok": gap_a - gap_b <= TOLERANCE_SE * se_gap,
            "entropy": self.entropy,
            "entropy_se": self.entropy_se,
        }


class BarKeeper:
    """Keeps, per (problem, bar NFE), the samples of hwaksan's and the peers' most accurate
    deterministic sampler (lowest ODE error) while the benchmark runs."""

    def __init__(self, nfes: tuple[int, ...]) -> None:
        self.nfes = tuple(nfes)
        self.best: dict[tuple[str, int, str], tuple[object, torch.Tensor]] = {}

    def offer(self, result, x: torch.Tensor) -> None:
        if result.target_nfe not in self.nfes or result.stochastic or result.err is None:
            return
        if not math.isfinite(result.err):
            return
        side = "hwaksan" if result.family == "hwaksan" else "peer"
        key = (result.problem, result.target_nfe, side)
        if key not in self.best or result.err < self.best[key][0].err:
            self.best[key] = (result, x.detach().double().clone())

    def rows(self, problem: str, reference: PairedReference) -> list[dict]:
        """One bar row per NFE where both sides have a result."""
        out = []
        for n in self.nfes:
            a, b = self.best.get((problem, n, "hwaksan")), self.best.get((problem, n, "peer"))
            if a is None or b is None:
                continue
            (ra, xa), (rb, xb) = a, b
            stats = reference.compare(xa, xb, seed=n)
            ratio = ra.err / rb.err
            met = ratio <= 0.5 and stats["sw_ok"] and stats["nll_ok"]
            out.append(
                {
                    "problem": problem,
                    "nfe": n,
                    "ours": f"{ra.sampler} {ra.grid}",
                    "ours_err": ra.err,
                    "peer": f"{rb.family} {rb.sampler} {rb.grid}",
                    "peer_err": rb.err,
                    "ratio": ratio,
                    **stats,
                    "met": met,
                }
            )
        return out


def _fmt(v: float) -> str:
    return f"{v:.2e}" if math.isfinite(v) else "fail"


def bar_markdown(rows: list[dict]) -> str:
    """The bar table: error ratio, paired SW and NLL-gap differences with their standard errors."""
    lines = [
        "| problem | NFE | hwaksan best (err) | best peer by err (err) | err ratio | SW ours / peer "
        "(delta ± SE) | NLL gap ours / peer (delta ± SE) | bar |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "sw" not in r:
            dist = f"{r.get('note', '-')} | -"
        else:
            sw_mark = "" if r["sw_ok"] else " **worse**"
            nll_mark = "" if r["nll_ok"] else " **worse**"
            dist = (
                f"{r['sw']:.4f} / {r['sw_peer']:.4f} ({r['sw_delta']:+.4f} ± {r['sw_se']:.4f}){sw_mark} | "
                f"{r['nll_gap']:.3f} / {r['nll_gap_peer']:.3f} ({r['nll_gap_delta']:+.3f} ± "
                f"{r['nll_gap_se']:.3f}){nll_mark}"
            )
        lines.append(
            f"| {r['problem']} | {r['nfe']} | {r['ours']}: {_fmt(r['ours_err'])} | {r['peer']}: "
            f"{_fmt(r['peer_err'])} | {r['ratio']:.2f} | {dist} | {'met' if r['met'] else 'not met'} |"
        )
    met = sum(r["met"] for r in rows)
    lines.append(f"\nMet on {met} of {len(rows)} cells.")
    return "\n".join(lines)
