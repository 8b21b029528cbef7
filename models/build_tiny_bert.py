"""Export models/tiny_bert.onnx: a 2-layer, 64-wide BERT encoder with seeded random weights (a test fixture).

Usage (by hand, not in CI):  python models/build_tiny_bert.py   (needs the ``models`` extra: torch==2.13.0 CPU)

The graph has the structure of the zoo's all-MiniLM-L6-v2 export (models/third_party/zoo/minilm.py, the same
hand-written post-LN BERT and torch.onnx.export settings, opset 17): word + position + token-type embeddings,
LayerNormalization, an additive attention mask ``(1 - mask) * finfo(float32).min``, per layer Q/K/V Linear ->
heads -> softmax(QK^T / sqrt(d) + mask) V -> output Linear -> residual + LayerNorm -> Linear -> GELU (Erf) ->
Linear -> residual + LayerNorm, then mean pooling over the mask and L2 normalization. Two channels of every
LayerNorm scale are 12x the others, so the normalized activations carry BERT-like outlier channels (what
SmoothQuant is for). Inputs ``input_ids``, ``attention_mask``, ``token_type_ids`` int64 [batch, sequence];
outputs ``last_hidden_state`` [batch, sequence, 64] and ``sentence_embedding`` [batch, 64]. The random
calibration/evaluation data the tests use is made in code (tests/support/transformer.py).
"""

import io
import os

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "tiny_bert.onnx")
HIDDEN, HEADS, LAYERS, FFN, VOCAB, MAXPOS = 64, 4, 2, 128, 96, 32
OUTLIERS = (5, 41)


def weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    w: dict[str, np.ndarray] = {}

    def add(name, *shape, std=0.08):
        w[name] = (rng.standard_normal(shape) * std).astype(np.float32)

    add("word", VOCAB, HIDDEN, std=0.5)
    add("pos", MAXPOS, HIDDEN, std=0.2)
    add("segment", 2, HIDDEN, std=0.2)
    norms = ["emb_ln"] + [f"l{i}.{n}" for i in range(LAYERS) for n in ("ln1", "ln2")]
    for n in norms:
        gamma = (1.0 + 0.1 * rng.standard_normal(HIDDEN)).astype(np.float32)
        gamma[list(OUTLIERS)] *= 12.0
        w[n + ".g"], w[n + ".b"] = gamma, (0.05 * rng.standard_normal(HIDDEN)).astype(np.float32)
    for i in range(LAYERS):
        for m, (o, k) in {"q": (HIDDEN, HIDDEN), "k": (HIDDEN, HIDDEN), "v": (HIDDEN, HIDDEN),
                          "o": (HIDDEN, HIDDEN), "f1": (FFN, HIDDEN), "f2": (HIDDEN, FFN)}.items():
            add(f"l{i}.{m}.w", o, k, std=1.0 / np.sqrt(k))
            add(f"l{i}.{m}.b", o, std=0.02)
    return w


class TinyBert(nn.Module):
    def __init__(self, w: dict[str, np.ndarray]):
        super().__init__()
        for k, v in sorted(w.items()):
            self.register_buffer(k.replace(".", "__"), torch.from_numpy(v.copy()))

    def p(self, name):
        return getattr(self, name.replace(".", "__"))

    def ln(self, x, pre):
        return nn.functional.layer_norm(x, (HIDDEN,), self.p(pre + ".g"), self.p(pre + ".b"), 1e-12)

    def lin(self, x, pre):
        return nn.functional.linear(x, self.p(pre + ".w"), self.p(pre + ".b"))

    def forward(self, input_ids, attention_mask, token_type_ids):
        n, length = input_ids.shape
        d = HIDDEN // HEADS
        pos = torch.arange(length).unsqueeze(0)
        x = self.p("word")[input_ids] + self.p("pos")[pos] + self.p("segment")[token_type_ids]
        x = self.ln(x, "emb_ln")
        bias = (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * torch.finfo(torch.float32).min
        for i in range(LAYERS):
            pre = f"l{i}."
            heads = lambda t: t.view(n, length, HEADS, d).transpose(1, 2)  # noqa: E731
            q, k, v = (heads(self.lin(x, pre + m)) for m in ("q", "k", "v"))
            att = torch.softmax(q @ k.transpose(-1, -2) / np.sqrt(float(d)) + bias, dim=-1)
            ctx = (att @ v).transpose(1, 2).reshape(n, length, HIDDEN)
            x = self.ln(x + self.lin(ctx, pre + "o"), pre + "ln1")
            h = nn.functional.gelu(self.lin(x, pre + "f1"))
            x = self.ln(x + self.lin(h, pre + "f2"), pre + "ln2")
        m = attention_mask.unsqueeze(-1).to(torch.float32)
        pooled = (x * m).sum(1) / torch.clamp(m.sum(1), min=1e-9)
        return x, nn.functional.normalize(pooled, p=2.0, dim=1)


def main() -> None:
    torch.manual_seed(0)
    model = TinyBert(weights()).eval()
    ids = torch.ones(2, 16, dtype=torch.int64)
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model, (ids, ids, torch.zeros_like(ids)), buf, opset_version=17, dynamo=False,
                          input_names=["input_ids", "attention_mask", "token_type_ids"],
                          output_names=["last_hidden_state", "sentence_embedding"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                                        "attention_mask": {0: "batch", 1: "sequence"},
                                        "token_type_ids": {0: "batch", 1: "sequence"},
                                        "last_hidden_state": {0: "batch", 1: "sequence"},
                                        "sentence_embedding": {0: "batch"}})
    with open(OUT, "wb") as f:
        f.write(buf.getvalue())
    print(f"wrote {OUT} ({len(buf.getvalue())} bytes)")


if __name__ == "__main__":
    main()
