"""The condition and the guided denoiser of ``hwaksan sample``, built from a :class:`TrainedModel`.

:func:`sample_conditioning` is the one entry point: class labels (``--class`` / ``--uncond``) or
text prompts (``--prompt``), then classifier-free guidance (Ho & Salimans 2022; ``--guidance``,
``--negative-class`` / ``--negative-prompt``, ``--guidance-rescale``, ``--guidance-interval``) and
classifier guidance (Dhariwal & Nichol 2021; ``--classifier``, ``--classifier-scale``) around the
model's data-space denoiser (:mod:`hwaksan.guidance`). The options are those of
:func:`hwaksan.cli.args.add_class_arguments`, :func:`~hwaksan.cli.args.add_guidance_arguments` and
:func:`~hwaksan.cli.args.add_prompt_arguments`.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

import torch

from ..conditioning.text import load_text_encoder, null_cond
from ..guidance import ClassifierFreeGuidance, ClassifierGuidance
from ..io.artifact import TrainedModel
from ..io.checkpoint import CheckpointError
from ..training.classifier import classifier_log_prob, load_classifier

__all__ = ["Conditioning", "sample_conditioning", "guided_denoiser", "text_condition"]


@dataclass
class Conditioning:
    """What the sampler gets: the (guided) denoiser and the condition; ``nrow``: the grid's
    columns the condition suggests (one per prompt), else None."""

    denoiser: Any
    cond: Any
    nrow: int | None = None


def sample_conditioning(model: TrainedModel, args: argparse.Namespace) -> Conditioning:
    """The denoiser and condition of ``args.n`` samples of ``model`` as the options ask.

    Raises:
        ValueError: options that do not fit the model (one line naming the fix).
    """
    if model.text is not None:
        return text_condition(model, args)
    if args.prompt or args.negative_prompt is not None:
        raise ValueError(
            "--prompt / --negative-prompt need a text-conditional model; this one is a "
            f"{model.describe()} model"
        )
    k = model.num_classes
    cond = None
    if k and not args.uncond:
        if args.label is not None and not 0 <= args.label < k:
            raise ValueError(f"--label must be in 0..{k - 1}")
        cond = model.labels(args.n, args.label)
    denoiser, cond = guided_denoiser(model, cond, args)
    return Conditioning(denoiser, cond)


def guided_denoiser(model: TrainedModel, cond: Any, args: argparse.Namespace) -> tuple[Any, Any]:
    """Wrap ``model.denoiser`` as the guidance options ask; returns ``(denoiser, cond)``.

    ``cond`` is the class labels (None: an unconditional model, or ``--uncond``); with
    ``--classifier`` and no labels, the classes ``--class`` (or ``i % K``) name the target only.

    Raises:
        ValueError: options that do not fit the model (the message names the fix).
    """
    k = model.num_classes
    use_cfg = args.guidance != 1.0 or args.negative_class is not None
    if not use_cfg and (args.guidance_rescale or args.guidance_interval):
        raise ValueError(
            "--guidance-rescale / --guidance-interval act on classifier-free guidance: add --guidance W"
        )
    denoiser, parts = model.denoiser, []
    if use_cfg:
        if not k:
            raise ValueError("--guidance needs a class-conditional model (this checkpoint has no classes)")
        if cond is None:
            raise ValueError("--guidance needs a class: drop --uncond")
        uncond = None
        if args.negative_class is not None:
            if not 0 <= args.negative_class <= k:
                raise ValueError(f"--negative-class must be in 0..{k} ({k} is the null class)")
            uncond = torch.tensor([args.negative_class], device=cond.device)
        if not 0.0 <= args.guidance_rescale <= 1.0:
            raise ValueError("--guidance-rescale must be in [0, 1]")
        denoiser = ClassifierFreeGuidance(
            denoiser,
            args.guidance,
            uncond=uncond,
            null_class=k,
            rescale=args.guidance_rescale,
            interval=tuple(args.guidance_interval) if args.guidance_interval else None,
        )
        parts.append(
            f"CFG w={args.guidance:g}"
            + (f", negative class {args.negative_class}" if args.negative_class is not None else "")
            + (f", rescale {args.guidance_rescale:g}" if args.guidance_rescale else "")
            + (f", interval sigma~ in {list(args.guidance_interval)}" if args.guidance_interval else "")
        )
    if args.classifier:
        denoiser, cond, part = _classifier_guidance(model, denoiser, cond, args)
        parts.append(part)
    if parts:
        print("hwaksan sample: guidance: " + "; ".join(parts), file=sys.stderr)
    return denoiser, cond


def _classifier_guidance(
    model: TrainedModel, denoiser: Any, cond: Any, args: argparse.Namespace
) -> tuple[Any, Any, str]:
    """``denoiser`` under classifier guidance by ``--classifier``; returns (denoiser, cond, summary)."""
    try:
        net, process, info = load_classifier(args.classifier)
    except (CheckpointError, OSError) as err:
        raise ValueError(f"--classifier: {err}") from None
    n_cls = int(net.config["num_classes"])
    k = model.num_classes
    if k and n_cls != k:
        raise ValueError(f"--classifier has {n_cls} classes but the model has {k}")
    net = net.to(model.device)
    condition_model = cond is not None
    if cond is None:  # an unconditional model, or --uncond: the classes name the target only
        if args.label is not None and not 0 <= args.label < n_cls:
            raise ValueError(f"--class must be in 0..{n_cls - 1}")
        cond = (
            torch.full((args.n,), args.label, dtype=torch.long, device=model.device)
            if args.label is not None
            else torch.arange(args.n, device=model.device) % n_cls
        )
    # the classifier's input scaling (its training sigma_data) is recorded in its checkpoint
    sigma_data = float(info.get("sigma_data", 0.5))
    log_prob = classifier_log_prob(net, process, sigma_data, model_process=model.process)
    denoiser = ClassifierGuidance(denoiser, log_prob, args.classifier_scale, condition_model=condition_model)
    kind = "conditional" if condition_model else "unconditional"
    return (
        denoiser,
        cond,
        f"classifier guidance s={args.classifier_scale:g} ({args.classifier}, {kind} model)",
    )


def text_condition(model: TrainedModel, args: argparse.Namespace) -> Conditioning:
    """The condition of a text-conditional model: prompts embedded with the checkpoint's encoder;
    with ``--guidance W``, classifier-free guidance whose reference branch is the null caption
    (zero tokens, all-False mask, zero pooled vector: what training dropped captions to) or the
    negative prompt. ``--guidance-rescale`` and ``--guidance-interval`` apply as for class labels.

    Raises:
        ValueError: no prompt, or options that do not fit (the message names the fix).
    """
    spec = model.text
    device = model.device
    w = float(args.guidance)
    if args.negative_class is not None or args.classifier:
        raise ValueError("--negative-class / --classifier are for class labels: use --negative-prompt")
    encoder = load_text_encoder(spec.max_length, spec.encoder)
    if args.uncond:
        if args.prompt or w != 1.0:
            raise ValueError("--uncond samples the null caption: drop --prompt and --guidance")
        return Conditioning(model.denoiser, null_cond(args.n, 1, encoder.dim, device))
    if not args.prompt:
        raise ValueError(
            'this checkpoint is text-conditional: give --prompt "TEXT" (repeatable), or --uncond for the '
            "unconditional model"
        )
    prompts = list(args.prompt)
    texts = [prompts[i % len(prompts)] for i in range(args.n)]
    cond = {k: v.to(device) for k, v in encoder.cond(texts).items()}
    nrow = len(prompts) if len(prompts) > 1 else None
    if w == 1.0:
        if args.negative_prompt is not None:
            raise ValueError(
                "--negative-prompt acts through classifier-free guidance: add --guidance W (e.g. 3)"
            )
        print(f"hwaksan sample: prompts {prompts} (no guidance)", file=sys.stderr)
        return Conditioning(model.denoiser, cond, nrow)
    if args.negative_prompt is not None:
        uncond = {k: v.to(device) for k, v in encoder.cond([args.negative_prompt]).items()}
    else:
        uncond = null_cond(1, 1, encoder.dim, device)
    interval = args.guidance_interval
    denoiser = ClassifierFreeGuidance(
        model.denoiser,
        w,
        uncond=uncond,
        rescale=float(args.guidance_rescale or 0.0),
        interval=tuple(interval) if interval else None,
    )
    neg = f", negative prompt {args.negative_prompt!r}" if args.negative_prompt is not None else ""
    print(f"hwaksan sample: prompts {prompts}; CFG w={w:g}{neg}", file=sys.stderr)
    return Conditioning(denoiser, cond, nrow)
