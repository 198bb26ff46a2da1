"""Diffusion Transformers: DiT and its mixture-of-experts variant.

:class:`DiT` follows Peebles & Xie 2023 ("Scalable Diffusion Models with Transformers", sec. 3.2):
the image is cut into ``p x p`` patches, each linearly embedded and given a fixed 2-D sine-cosine
position (as in MAE, He et al. 2022); transformer blocks are conditioned by **adaLN-Zero**: the
sum ``c`` of the noise-level and class embeddings regresses a shift ``beta``, a scale ``gamma``
and a gate ``alpha`` for each residual branch,

    x = x + alpha_1 * Attn(LN(x) * (1 + gamma_1) + beta_1)
    x = x + alpha_2 * MLP(LN(x) * (1 + gamma_2) + beta_2)

with the regression layer initialised to zero, so that every block starts as the identity. A final
adaLN layer and a zero-initialised linear map decode each token into a ``p x p`` patch
("unpatchify"). Optional: cross-attention to a condition sequence (as in PixArt-alpha, Chen et
al. 2024, sec. 2.3, here gated by its own adaLN-Zero triple so the block remains the identity at
initialisation), extra input channels for image conditioning, learned variance.

:class:`MoEDiT` replaces the MLP of each block (or of every ``moe_every``-th block) with a
mixture of experts with top-k routing (Shazeer et al. 2017; GShard, Lepikhin et al. 2021; Switch
Transformer, Fedus et al. 2022). After every forward pass the network exposes ``aux_loss``, the
mean over MoE layers of the Switch load-balancing loss (Fedus et al. 2022, eq. 4-6)

    L_aux = E * sum_e f_e * P_e,

``f_e`` the fraction of token-to-expert assignments that went to expert ``e`` and ``P_e`` the mean
router probability of ``e``; ``L_aux = 1`` for perfectly uniform routing and ``E`` when all tokens
go to one expert (1 is the minimum over confident routers; an unconfident router can dip slightly
below it, e.g. 0.875 for E = 2). ``expert_usage`` ``(n_moe_layers, E)`` holds the ``f_e``.
The training loss should add ``coef * net.aux_loss`` (Switch uses ``coef = 0.01``).

**Pad policy.** Inputs whose sides are not multiples of the patch size are zero-padded (split
evenly between the two sides) and the output is cropped back.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .conditioning import NetworkCondition, labels_or_null
from .embeddings import NoiseLevelEmbedding
from .unet import MultiHeadAttention, pad_to_multiple, unpad

__all__ = ["DiT", "DiTBlock", "MoEDiT", "MoEFeedForward", "sincos_pos_embed_1d", "sincos_pos_embed_2d"]


def _sincos(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """``[sin(p w_k), cos(p w_k)]`` with ``w_k = 10000^(-k / (dim/2))`` (Vaswani et al. 2017, sec. 3.5):
    ``(len(positions), dim)`` float64 for positions ``(P,)``; ``dim`` even."""
    half = dim // 2
    omega = 1.0 / 10000 ** (torch.arange(half, dtype=torch.float64) / half)
    arg = positions.double()[:, None] * omega[None]
    return torch.cat([arg.sin(), arg.cos()], dim=1)


def sincos_pos_embed_1d(dim: int, length: int) -> torch.Tensor:
    """Fixed sine-cosine positions ``(length, dim)`` of a sequence (Vaswani et al. 2017, sec. 3.5)."""
    if dim % 2:
        raise ValueError(f"the position embedding needs an even width, got {dim}")
    return _sincos(dim, torch.arange(length)).float()


def sincos_pos_embed_2d(dim: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding (MAE; Peebles & Xie 2023, sec. 3.2).

    Half the channels encode the row, half the column, each with the 1-D embedding of Vaswani et
    al. 2017 (sec. 3.5). Shape: ``(grid_h * grid_w, dim)``, row-major; ``dim`` divisible by 4.
    """
    if dim % 4:
        raise ValueError(f"the position embedding needs a width divisible by 4, got {dim}")
    rows, cols = torch.meshgrid(
        torch.arange(grid_h, dtype=torch.float64),
        torch.arange(grid_w, dtype=torch.float64),
        indexing="ij",
    )
    return torch.cat(
        [_sincos(dim // 2, rows.reshape(-1)), _sincos(dim // 2, cols.reshape(-1))], dim=1
    ).float()


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class _FeedForward(nn.Module):
    """Dense transformer MLP: ``Linear -> GELU(tanh) -> Linear`` (as in DiT)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class MoEFeedForward(nn.Module):
    """Mixture-of-experts MLP with top-k token routing (Shazeer et al. 2017; Fedus et al. 2022).

    A linear router gives each token probabilities ``p = softmax(W_r x)`` over ``E`` experts; the
    token goes to its ``k`` most probable experts and the output is ``sum_{e in topk} g_e
    FFN_e(x)``, with gates ``g_e = p_e`` for ``k = 1`` (Switch, eq. 2: keeps a gradient to the
    router) and ``g_e = p_e / sum_{topk} p`` for ``k > 1`` (GShard). No capacity limit: every
    token is processed by exactly ``k`` experts. Every expert takes part in the autograd graph
    even when it gets no token (zero gradient), so DDP needs no ``find_unused_parameters``.

    After each call, ``self.aux_loss`` holds the Switch load-balancing loss (eq. 4)
    ``E * sum_e f_e P_e`` and ``self.usage`` the ``f_e`` (fraction of the ``N k`` assignments
    given to each expert, detached).

    Args:
        dim: token width D.
        hidden: hidden width of each expert.
        num_experts: E.
        top_k: k, experts per token.

    Shapes: ``(..., D)`` -> ``(..., D)``.
    """

    def __init__(self, dim: int, hidden: int, num_experts: int, top_k: int = 1) -> None:
        super().__init__()
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"top_k must be in 1..num_experts={num_experts}, got {top_k}")
        self.num_experts = num_experts
        self.top_k = top_k
        self.router = nn.Linear(dim, num_experts, bias=False)
        self.w1 = nn.Parameter(torch.empty(num_experts, dim, hidden))
        self.b1 = nn.Parameter(torch.zeros(num_experts, hidden))
        self.w2 = nn.Parameter(torch.empty(num_experts, hidden, dim))
        self.b2 = nn.Parameter(torch.zeros(num_experts, dim))
        bound = math.sqrt(6.0 / (dim + hidden))  # Xavier-uniform, per expert
        nn.init.uniform_(self.w1, -bound, bound)
        nn.init.uniform_(self.w2, -bound, bound)
        self.aux_loss: torch.Tensor | None = None
        self.usage: torch.Tensor | None = None

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Route tokens ``x (N, D)``.

        Returns:
            ``(experts, gates, probs)``: the chosen experts ``(N, k)`` long (distinct per
            token), their gates ``(N, k)`` and the router probabilities ``(N, E)`` (float32).
        """
        probs = torch.softmax(self.router(x).float(), dim=-1)
        top_p, experts = probs.topk(self.top_k, dim=-1)
        gates = top_p if self.top_k == 1 else top_p / top_p.sum(dim=-1, keepdim=True)
        return experts, gates, probs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        n, k, n_exp = x.shape[0], self.top_k, self.num_experts
        experts, gates, probs = self.route(x)

        # Sort the N k assignments by expert: each expert then reads one contiguous slice.
        flat = experts.reshape(-1)
        order = torch.argsort(flat, stable=True)
        token = order // k
        counts = torch.bincount(flat, minlength=n_exp)
        xs = x[token]
        outs = []
        for e, xe in enumerate(xs.split(counts.tolist())):
            h = F.gelu(torch.addmm(self.b1[e], xe, self.w1[e]), approximate="tanh")
            outs.append(torch.addmm(self.b2[e], h, self.w2[e]))
        y = torch.cat(outs) * gates.reshape(-1)[order, None].to(outs[0].dtype)
        out = torch.zeros_like(x).index_add_(0, token, y.to(x.dtype))

        f = counts.to(probs.dtype) / (n * k)  # f_e, Switch eq. 5 (top-k assignments)
        p_mean = probs.mean(dim=0)  # P_e, Switch eq. 6
        self.aux_loss = n_exp * (f * p_mean).sum()  # Switch eq. 4
        self.usage = f.detach()
        return out.reshape(shape)


class DiTBlock(nn.Module):
    """DiT block with adaLN-Zero (Peebles & Xie 2023, sec. 3.2, Fig. 3).

    Args:
        dim: token width D.
        num_heads: attention heads.
        mlp_ratio: hidden width of the MLP (of each expert) over D.
        context_dim: width of the condition sequence for a gated cross-attention branch.
        num_experts: 0 for a dense MLP, else the number of experts of a :class:`MoEFeedForward`.
        top_k: experts per token.

    Shapes: ``x (B, N, D)``, ``c (B, D)`` (already passed through SiLU), ``context (B, L, Dc)``,
    ``mask (B, L)`` -> ``(B, N, D)``. At initialisation the block is the identity.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        context_dim: int | None = None,
        num_experts: int = 0,
        top_k: int = 1,
    ) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = MultiHeadAttention(dim, num_heads)
        self.cross = None
        if context_dim is not None:
            self.norm_cross = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
            self.cross = MultiHeadAttention(dim, num_heads, context_dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp: nn.Module = (
            MoEFeedForward(dim, hidden, num_experts, top_k) if num_experts else _FeedForward(dim, hidden)
        )
        self.n_mod = 9 if self.cross is not None else 6
        self.adaLN = nn.Linear(dim, self.n_mod * dim)  # adaLN-Zero: starts at zero
        nn.init.zeros_(self.adaLN.weight)
        nn.init.zeros_(self.adaLN.bias)

    def forward(
        self,
        x: torch.Tensor,
        c: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        mod = self.adaLN(c)[:, None].chunk(self.n_mod, dim=-1)
        shift1, scale1, gate1, shift2, scale2, gate2 = mod[:6]
        x = x + gate1 * self.attn(_modulate(self.norm1(x), shift1, scale1))
        if self.cross is not None and context is not None:
            shift3, scale3, gate3 = mod[6:]
            h = _modulate(self.norm_cross(x), shift3, scale3)
            x = x + gate3 * self.cross(h, context, mask)
        return x + gate2 * self.mlp(_modulate(self.norm2(x), shift2, scale2))


class DiT(nn.Module):
    """Diffusion Transformer (Peebles & Xie 2023), optionally with MoE feed-forwards.

    Args:
        input_size: image side the fixed position embedding is precomputed for (other sizes
            work; their embedding is computed on the fly).
        patch_size: p; the token grid is ``ceil(H/p) x ceil(W/p)`` (see the pad policy).
        in_channels: image channels C.
        hidden_size: token width D.
        depth: number of blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width over D.
        num_classes: class embedding with ``num_classes + 1`` rows (the last is the null class of
            classifier-free guidance, used when no label is given).
        context_dim: width Dc of a condition sequence for cross-attention (``None``: off).
        in_extra_channels: channels Ce of a conditioning image ``cond["image"]`` concatenated to
            the input before patchify.
        learn_sigma: double the output channels ``[prediction (C), variance v (C)]``.
        out_channels: output channels before doubling (default ``in_channels``).
        num_experts: 0 for dense MLPs; else E experts per MoE layer.
        top_k: experts per token (k).
        moe_every: every ``moe_every``-th block (the 1st, (1+moe_every)-th, ...) gets an MoE MLP.
        pooled_dim: width of a pooled condition vector ``cond["pooled"]`` ``(B, Dp)`` projected and
            added to the conditioning vector ``c``; ``None``: off. Zeros when absent, and for a
            sample whose ``context_mask`` is all False (the null caption).

    Shapes: ``x (B, C, H, W)``, ``noise_level (B,)`` -> ``(B, C_out, H, W)``.

    Attributes set by ``forward`` (MoE only, else ``None``): ``aux_loss`` (scalar tensor with
    gradient, mean over MoE layers; 1 for uniform routing) and ``expert_usage``
    ``(n_moe_layers, E)``.
    """

    data_axes = 2

    @staticmethod
    def input_arguments(shape: tuple[int, ...]) -> dict[str, int]:
        """Channels and the side of the position-embedding grid follow the images ``(C, H, W)``."""
        return {"in_channels": int(shape[0]), "input_size": int(shape[1])}

    def __init__(
        self,
        input_size: int = 32,
        patch_size: int = 2,
        in_channels: int = 1,
        hidden_size: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        num_classes: int | None = None,
        context_dim: int | None = None,
        in_extra_channels: int = 0,
        learn_sigma: bool = False,
        out_channels: int | None = None,
        num_experts: int = 0,
        top_k: int = 1,
        moe_every: int = 1,
        pooled_dim: int | None = None,
    ) -> None:
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        if num_experts == 1 or num_experts < 0:
            raise ValueError(f"num_experts must be 0 (dense) or >= 2, got {num_experts}")
        if moe_every < 1:
            raise ValueError(f"moe_every must be >= 1, got {moe_every}")
        self.config = {
            "input_size": input_size,
            "patch_size": patch_size,
            "in_channels": in_channels,
            "hidden_size": hidden_size,
            "depth": depth,
            "num_heads": num_heads,
            "mlp_ratio": mlp_ratio,
            "num_classes": num_classes,
            "context_dim": context_dim,
            "in_extra_channels": in_extra_channels,
            "learn_sigma": learn_sigma,
            "out_channels": out_channels,
            "num_experts": num_experts,
            "top_k": top_k,
            "moe_every": moe_every,
        }
        if pooled_dim:  # only when on: configs of older checkpoints stay as they were
            self.config["pooled_dim"] = pooled_dim
        self.patch_size = patch_size
        self.num_classes = num_classes
        self.in_extra_channels = in_extra_channels
        self.c_out = out_channels * (2 if learn_sigma else 1)

        self.patch_embed = nn.Conv2d(
            in_channels + in_extra_channels, hidden_size, patch_size, stride=patch_size
        )
        grid = -(-input_size // patch_size)
        self.register_buffer("pos_embed", sincos_pos_embed_2d(hidden_size, grid, grid), persistent=False)
        self._grid = (grid, grid)
        self.noise_embed = NoiseLevelEmbedding(hidden_size, freq_dim=256)
        self.class_embed = nn.Embedding(num_classes + 1, hidden_size) if num_classes else None
        self.pooled_proj = nn.Linear(pooled_dim, hidden_size) if pooled_dim else None
        self.blocks = nn.ModuleList(
            DiTBlock(
                hidden_size,
                num_heads,
                mlp_ratio,
                context_dim,
                num_experts if (num_experts and i % moe_every == 0) else 0,
                top_k,
            )
            for i in range(depth)
        )
        self.norm_out = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.adaLN_out = nn.Linear(hidden_size, 2 * hidden_size)
        self.out = nn.Linear(hidden_size, patch_size * patch_size * self.c_out)
        self.aux_loss: torch.Tensor | None = None
        self.expert_usage: torch.Tensor | None = None
        self._init_weights()

    def _init_weights(self) -> None:
        # DiT's initialisation (Peebles & Xie 2023, sec. 3.2 and their reference code's habits).
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        w = self.patch_embed.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)
        # The conditioning vector c starts at unit scale (Xavier noise MLP, N(0, 1) class rows, as
        # in our U-Net), not at DiT's std 0.02: with c ~ 0.02 the zero-initialised adaLN layers need
        # weights ~ 1 / (0.02 sqrt(D)) before the noise level or the class can modulate anything,
        # thousands of AdamW steps at lr 1e-3 (measured in docs/benchmarks.md, DiT section).
        if self.class_embed is not None:
            nn.init.normal_(self.class_embed.weight, std=1.0)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN.weight)
            nn.init.zeros_(block.adaLN.bias)
        for m in (self.adaLN_out, self.out):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def _positions(self, gh: int, gw: int, like: torch.Tensor) -> torch.Tensor:
        if (gh, gw) == self._grid:
            return self.pos_embed.to(like.dtype)
        return sincos_pos_embed_2d(like.shape[-1], gh, gw).to(like.device, like.dtype)

    def embed(self, noise_level: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Conditioning vector ``c`` = noise-level + class embedding: ``(B,)`` -> ``(B, D)``."""
        c = self.noise_embed(noise_level)
        if self.class_embed is not None:
            c = c + self.class_embed(labels_or_null(labels, c.shape[0], self.num_classes, c.device))
        return c

    def forward(self, x: torch.Tensor, noise_level: torch.Tensor, cond: Any = None) -> torch.Tensor:
        """Run the network.

        Args:
            x: noisy images ``(B, C, H, W)``.
            noise_level: ``(B,)`` scaled noise level (e.g. ``c_noise``), not a step index.
            cond: ``None``, labels ``(B,)`` or a dict / dataclass, see
                :class:`hwaksan.models.conditioning.NetworkCondition` (a DiT reads no ``aug_level``).

        Returns:
            ``(B, C_out, H, W)``.
        """
        parsed = NetworkCondition.parse(
            cond, network=type(self).__name__, in_extra_channels=self.in_extra_channels
        )
        if noise_level.ndim == 0:
            noise_level = noise_level.expand(x.shape[0])
        c = self.embed(noise_level, parsed.labels)
        if self.pooled_proj is not None:
            c = c + self.pooled_proj(parsed.pooled_vector(c, self.pooled_proj.in_features))
        c = F.silu(c)  # the SiLU before every adaLN Linear
        if self.in_extra_channels:
            x = torch.cat([x, parsed.image.to(x.dtype)], dim=1)
        context, mask = parsed.context, parsed.context_mask
        if context is not None:
            context = context.to(x.dtype)

        p = self.patch_size
        x, pad = pad_to_multiple(x, p)
        h = self.patch_embed(x)  # (B, D, gh, gw)
        b, d, gh, gw = h.shape
        h = h.flatten(2).transpose(1, 2)  # (B, N, D)
        h = h + self._positions(gh, gw, h)

        aux, usage = [], []
        for block in self.blocks:
            h = block(h, c, context, mask)
            if isinstance(block.mlp, MoEFeedForward):
                aux.append(block.mlp.aux_loss)
                usage.append(block.mlp.usage)
        if aux:
            self.aux_loss = torch.stack(aux).mean()
            self.expert_usage = torch.stack(usage)

        shift, scale = self.adaLN_out(c)[:, None].chunk(2, dim=-1)
        h = self.out(_modulate(self.norm_out(h), shift, scale))  # (B, N, p*p*C_out)
        # Unpatchify: (B, gh, gw, p, p, C) -> (B, C, gh*p, gw*p).
        h = h.reshape(b, gh, gw, p, p, self.c_out).permute(0, 5, 1, 3, 2, 4)
        h = h.reshape(b, self.c_out, gh * p, gw * p)
        return unpad(h, pad)


class MoEDiT(DiT):
    """DiT whose feed-forwards are mixtures of experts (top-k routing).

    The same as :class:`DiT` with ``num_experts`` (default 4) experts per MoE layer. See the module
    docstring for ``aux_loss`` and ``expert_usage``.
    """

    def __init__(self, *args: Any, num_experts: int = 4, top_k: int = 1, **kwargs: Any) -> None:
        if num_experts < 2:
            raise ValueError(f"MoEDiT needs num_experts >= 2, got {num_experts}")
        super().__init__(*args, num_experts=num_experts, top_k=top_k, **kwargs)
