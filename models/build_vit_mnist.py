"""Train and export models/vit_mnist.onnx (small Vision Transformer).

Usage (by hand, not in CI):  python models/build_vit_mnist.py
Needs the ``models`` extra (torch==2.13.0 CPU). Deterministic (seed 0, 2 threads).

Topology (input 1x28x28):
  patch embed  Conv 1->64, kernel=stride=4 -> (B,64,7,7) -> Reshape -> Transpose
               -> 49 tokens x 64, + learned position embedding (Add)
  3 x pre-LN encoder block (dim 64, 4 heads of 16, MLP 128):
      LayerNormalization -> Q/K/V Linear (MatMul+Add) -> Reshape/Transpose to heads
      -> MatMul(Q, K^T) -> Mul(1/sqrt(16)) -> Softmax -> MatMul(., V)
      -> Transpose/Reshape (merge heads) -> Linear -> residual Add
      LayerNormalization -> Linear 64->128 -> GELU (Erf form) -> Linear 128->64
      -> residual Add
  head  LayerNormalization -> mean over tokens (ReduceMean) -> Gemm 64->10
Head reshapes use -1 for the batch dimension, so the graph has no Shape ops
and the batch axis stays dynamic.
"""

import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import mnist_data  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import zoo_common as zc  # noqa: E402

OUT = os.path.join(HERE, "vit_mnist.onnx")
DIM, HEADS, DEPTH, MLP, PATCH = 64, 4, 3, 128, 4
NTOK = (28 // PATCH) ** 2
HP = dict(epochs=50, lr=2e-3, weight_decay=0.05, batch_size=64,
          label_smoothing=0.1, warmup_epochs=3, optimizer="AdamW",
          schedule="linear warmup + cosine", augmentation="rotation +-12deg, "
          "shift +-2.5px, scale 0.9-1.1 (affine_grid/grid_sample)", seed=0,
          dim=DIM, heads=HEADS, depth=DEPTH, mlp_hidden=MLP, patch=PATCH)


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.h, self.d = heads, dim // heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.scale = 1.0 / math.sqrt(self.d)

    def forward(self, x):  # x: (B, N, C)
        # Python-int N and C keep the exported Reshapes static (batch = -1).
        n, c = NTOK, DIM
        q = self.q(x).reshape(-1, n, self.h, self.d).transpose(1, 2)
        k = self.k(x).reshape(-1, n, self.h, self.d).transpose(1, 2)
        v = self.v(x).reshape(-1, n, self.h, self.d).transpose(1, 2)
        att = torch.matmul(q, k.transpose(-2, -1)) * self.scale
        att = att.softmax(dim=-1)
        y = torch.matmul(att, v).transpose(1, 2).reshape(-1, n, c)
        return self.proj(y)


class Block(nn.Module):
    def __init__(self, dim, heads, mlp):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class ViTMNIST(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(1, DIM, PATCH, PATCH)
        self.pos_embed = nn.Parameter(torch.zeros(1, NTOK, DIM))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.Sequential(*[Block(DIM, HEADS, MLP) for _ in range(DEPTH)])
        self.norm = nn.LayerNorm(DIM)
        self.head = nn.Linear(DIM, 10)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.patch(x)                                  # (B, C, 7, 7)
        x = x.reshape(-1, DIM, NTOK).transpose(1, 2)       # (B, 49, C)
        x = self.blocks(x + self.pos_embed)
        x = self.norm(x).mean(dim=1)
        return self.head(x)


def main():
    zc.seed_everything(0)
    splits = mnist_data.get_splits()
    model = ViTMNIST()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"ViTMNIST: {n_params} parameters")
    zc.build(model, splits, OUT, HP, build_script="models/build_vit_mnist.py", n_params=n_params,
             description="Small ViT: Conv patch embedding (4x4), learned position embedding, 3 pre-LN encoder "
             "blocks with hand-written 4-head self-attention (MatMul/Softmax), GELU MLP, LayerNormalization, "
             "mean-pool, Gemm head",
             check_ops=_check_ops)


def _check_ops(hist):
    assert hist.get("Softmax", 0) == DEPTH and hist.get("MatMul", 0) >= 2 * DEPTH
    assert hist.get("LayerNormalization", 0) == 2 * DEPTH + 1


if __name__ == "__main__":
    main()
