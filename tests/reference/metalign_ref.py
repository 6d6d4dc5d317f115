"""Reference implementation of the seed-generation meta-learner (MODEL.md section 2).

Written to match the research code's module names, so its state dict has exactly the names a
real checkpoint has.  Used by the fixture writers in this folder and by bench/.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class TransformerConfig:
    input_size: int = 2306
    embedding: bool = True
    hidden_size: int = 768
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    num_layers: int = 6
    hidden_act: str = "gelu"
    bias: bool = False
    logit_bias: bool = True
    attention_dropout: float = 0.1
    sequence_length: int = 100
    rope: bool = True  # False: learned positions (pos_encoder.embedding)


def precompute_freqs_cis(d, n, theta=10000.0):
    freqs = 1.0 / (theta ** (torch.arange(0, d, 2)[: d // 2].float() / d))
    t = torch.arange(n).float()
    return torch.polar(torch.ones(n, d // 2), torch.outer(t, freqs))


def apply_rope(x, freqs_cis):
    # x (B, H, S, d): pairs (2i, 2i+1) rotated as complex numbers
    xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    out = torch.view_as_real(xc * freqs_cis[: x.shape[2]]).flatten(3)
    return out.type_as(x)


class LearnedPositions(nn.Module):
    def __init__(self, n, c):
        super().__init__()
        self.embedding = nn.Embedding(n, c)

    def forward(self, h):
        return h + self.embedding.weight[: h.shape[1]]


class SelfAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.h = cfg.num_attention_heads
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size, bias=cfg.bias)
        self.o_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size, bias=cfg.bias)

    def forward(self, x, freqs_cis=None):
        B, S, C = x.shape
        d = C // self.h
        q, k, v = self.qkv(x).split(C, dim=-1)
        q = q.view(B, S, self.h, d).transpose(1, 2)
        k = k.view(B, S, self.h, d).transpose(1, 2)
        v = v.view(B, S, self.h, d).transpose(1, 2)
        if freqs_cis is not None:
            q = apply_rope(q, freqs_cis)
            k = apply_rope(k, freqs_cis)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d)
        mask = torch.ones(S, S, dtype=torch.bool).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        o = (att @ v).transpose(1, 2).reshape(B, S, C)
        return self.o_proj(o)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.fc1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=cfg.bias)
        self.fc2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=cfg.bias)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.hidden_size)
        self.self_attn = SelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.hidden_size)
        self.mlp = MLP(cfg)

    def forward(self, h, freqs_cis=None):
        h = h + self.self_attn(self.ln1(h), freqs_cis)
        return h + self.mlp(self.ln2(h))


class Transformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        if cfg.embedding:
            self.embedding = nn.Linear(cfg.input_size, cfg.hidden_size, bias=cfg.bias)
        if cfg.rope:
            d = cfg.hidden_size // cfg.num_attention_heads
            self.register_buffer("freqs_cis", precompute_freqs_cis(d, cfg.sequence_length))
        else:
            self.pos_encoder = LearnedPositions(cfg.sequence_length, cfg.hidden_size)
        self.layers = nn.ModuleList([Block(cfg) for _ in range(cfg.num_layers)])
        self.final_ln = nn.LayerNorm(cfg.hidden_size)
        self.linear_head = nn.Linear(cfg.hidden_size, 1, bias=cfg.logit_bias)

    def forward(self, x, return_layers=False):
        """x (B, S, input_size) -> logits (B, S, 1) [, list of layer outputs (B, S, C)]."""
        h = self.embedding(x) if self.cfg.embedding else x
        outs = [h]
        if not self.cfg.rope:
            h = self.pos_encoder(h)
        fc = self.freqs_cis if self.cfg.rope else None
        for blk in self.layers:
            h = blk(h, fc)
            outs.append(h)
        logits = self.linear_head(self.final_ln(h))
        return (logits, outs) if return_layers else logits
