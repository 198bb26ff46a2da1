"""A small training loop for low-dimensional data (the full trainer lives in ``trainer.py``).

Determinism: every random draw of optimiser step ``k`` (the batch, the source side, label dropout,
the times and the noise) comes from one generator seeded with ``mix_seed(seed, STEP_STREAM, k)``,
and torch's global generator is reseeded per step from ``mix_seed(seed, GLOBAL_STREAM, k)`` (and
restored afterwards), so a run is a pure function of its seed and a run resumed from the
:class:`~hwaksan.io.training_state.TrainingState` of step ``k`` continues bit-identically.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from ..io.training_state import TrainingState
from ..losses import denoising_loss
from ..parameterizations import ModelDenoiser
from ..processes import make_coupling
from ..utils import mix_seed
from .ema import EMA
from .optim import NonFiniteLossError, check_finite, make_optimizer, make_scheduler

__all__ = ["FitResult", "fit", "NonFiniteLossError", "STEP_STREAM", "GLOBAL_STREAM"]

# random streams of fit (the second part of every mix_seed)
STEP_STREAM, GLOBAL_STREAM = 11, 12


@dataclass
class FitResult:
    """Loss history (of the whole run, resumed steps included) and the EMA of the weights (load it
    with ``net.load_state_dict``)."""

    losses: list[float] = field(default_factory=list)
    ema_state: dict[str, torch.Tensor] | None = None


def _labelled(batch, model: ModelDenoiser, p_uncond: float, gen: torch.Generator):
    """``(x0, labels)`` from a ``{"x0", "labels"}`` batch, labels dropped to the null class
    (``num_classes``) with probability ``p_uncond``; any other batch is returned with ``None``."""
    if not isinstance(batch, dict):
        return batch, None
    k = (getattr(model.net, "config", None) or {}).get("num_classes")
    if not k:
        raise ValueError("sample_data returned labels but the network has no num_classes: build it with one")
    labels = batch["labels"].long()
    if p_uncond > 0:
        drop = torch.rand(labels.shape, generator=gen) < p_uncond
        labels = torch.where(drop, torch.full_like(labels, int(k)), labels)
    return batch["x0"], labels


def _restore(state: TrainingState, net: torch.nn.Module, opt, sched, ema: EMA) -> None:
    """Load a training state into the pieces of a run (raises ``ValueError`` when it does not fit)."""
    if len(state.emas) != 1:
        raise ValueError(f"the training state holds {len(state.emas)} EMAs; fit keeps one")
    try:
        net.load_state_dict(state.model, strict=True)
        opt.load_state_dict(state.optimizer)
    except (RuntimeError, KeyError, ValueError) as err:
        raise ValueError(
            f"the training state does not fit this network: {str(err).splitlines()[0]}"
        ) from None
    sched.load_state_dict(state.scheduler)
    for k, v in ema.shadows[0].items():
        v.copy_(state.emas[0][k])


def fit(
    model: ModelDenoiser,
    sample_data: Callable[[int, torch.Generator], torch.Tensor],
    *,
    steps: int = 2000,
    batch_size: int = 512,
    lr: float = 2e-3,
    weight_decay: float = 0.0,
    warmup: int = 100,
    ema_decay: float = 0.995,
    t_dist: str = "uniform",
    weighting: str = "simple",
    coupling=None,
    sample_source: Callable[[int, torch.Generator], torch.Tensor] | None = None,
    seed: int = 0,
    progress: bool = True,
    log_every: int = 50,
    p_uncond: float = 0.0,
    resume: TrainingState | None = None,
    checkpoint_every: int = 0,
    on_checkpoint: Callable[[TrainingState], None] | None = None,
    callback: Callable[[int, float], None] | None = None,
) -> FitResult:
    """Train ``model`` on batches from ``sample_data(n, generator) -> (n, D)`` with AdamW, linear
    warm-up then cosine decay, and an EMA of the weights (copied into the network at the end).

    Flows: ``coupling`` (a name of :data:`hwaksan.processes.COUPLINGS` or a function
    ``(x0, eps) -> eps``) pairs every batch with its noise, e.g. ``"ot"`` for OT-CFM;
    ``sample_source(n, generator)`` draws the source side (t = 1) from another distribution than
    ``N(0, I)`` (a flow between two data sets); and a ``sample_data`` that returns a tuple
    ``(x0, x1)`` gives fixed pairs (reflow, :func:`hwaksan.training.pairs.pair_sampler`).

    Class-conditional training: a ``sample_data`` that returns a dict ``{"x0": (n, D), "labels":
    (n,)}`` trains a network with ``num_classes`` on those labels, each replaced by the null class
    ``num_classes`` with probability ``p_uncond`` (condition dropout for classifier-free guidance,
    Ho & Salimans 2022).

    Checkpoints and resume: ``on_checkpoint(state)`` receives the
    :class:`~hwaksan.io.training_state.TrainingState` (``config`` left empty for the caller) after
    every ``checkpoint_every`` steps (0: never periodically), after the last step, and when a
    ``KeyboardInterrupt`` arrives while the state is consistent (outside the parameter update;
    the interrupt is then re-raised). ``resume`` continues from such a state bit-identically.
    ``callback(steps_done, loss)`` runs after every step.

    Raises:
        NonFiniteLossError: the loss became NaN or infinite.
        ValueError: ``p_uncond`` outside [0, 1], or a ``resume`` state that does not fit.
    """
    if not 0.0 <= p_uncond <= 1.0:
        raise ValueError(f"p_uncond must be in [0, 1], got {p_uncond}")
    net = model.net
    opt = make_optimizer(net.parameters(), lr=lr, weight_decay=weight_decay, fused=False)
    sched = make_scheduler(opt, steps, warmup)
    ema = EMA(net, (ema_decay,))
    result = FitResult()
    if resume is not None:
        _restore(resume, net, opt, sched, ema)
        result.losses = list(resume.losses)
    start = resume.step if resume is not None else 0
    pairing = make_coupling(coupling) if isinstance(coupling, str) else coupling

    def state(done: int) -> TrainingState:
        return TrainingState(
            step=done,
            config={},
            model=net.state_dict(),
            emas=[ema.state()],
            optimizer=opt.state_dict(),
            scheduler=sched.state_dict(),
            losses=list(result.losses),
            rng=torch.get_rng_state(),
        )

    bar = tqdm(total=steps, initial=start, disable=not progress, desc="train", leave=False)
    running = None
    done = saved = start
    updating = False
    try:
        with torch.random.fork_rng(devices=[]):
            for step in range(start, steps):
                torch.default_generator.manual_seed(mix_seed(seed, GLOBAL_STREAM, step))
                gen = torch.Generator().manual_seed(mix_seed(seed, STEP_STREAM, step))
                x0, eps, fixed = sample_data(batch_size, gen), None, False
                x0, labels = _labelled(x0, model, p_uncond, gen)
                if isinstance(x0, tuple):  # fixed pairs: the coupling is given
                    (x0, eps), fixed = x0, True
                elif sample_source is not None:
                    eps = sample_source(batch_size, gen)
                loss = denoising_loss(
                    model,
                    x0,
                    cond=labels,
                    t_dist=t_dist,
                    weighting=weighting,
                    generator=gen,
                    coupling=None if fixed else pairing,
                    eps=eps,
                )
                value = loss.item()
                check_finite(
                    value,
                    f"loss became {value} at step {step}: lower the learning rate (now {lr}) "
                    "or check the data for NaNs",
                )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                updating = True  # from here to the end of the update the state is half-way
                opt.step()
                sched.step()
                ema.update(net)
                result.losses.append(value)
                done, updating = step + 1, False
                bar.update(1)
                running = value if running is None else 0.98 * running + 0.02 * value
                if step % log_every == 0:
                    bar.set_postfix(loss=f"{running:.4f}")
                if on_checkpoint is not None and (
                    (checkpoint_every and done % checkpoint_every == 0) or done == steps
                ):
                    on_checkpoint(state(done))
                    saved = done
                if callback is not None:
                    callback(done, value)
    except KeyboardInterrupt:
        if on_checkpoint is not None and not updating and done != saved:
            on_checkpoint(state(done))
        raise
    finally:
        bar.close()
    result.ema_state = ema.state()
    ema.copy_to(net)
    return result
