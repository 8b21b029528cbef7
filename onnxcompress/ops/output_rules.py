"""What the op that produces a graph output says about that output's task (used by validation.outputs).

One table, keyed by (domain, op type, opset range) like every op registry: a Softmax producer means a probability
distribution over its axis, a Sigmoid an independent score in (0, 1), LayerNormalization hidden states, an LSTM's
second and third outputs a recurrent state, ArgMax or a comparison a decision. Data-movement ops (Reshape,
Transpose, ...) are *transparent*: the walk back from an output continues through them to the op that made the
values. A binary op with one constant input (the bias Add after a MatMul, a scale Mul) is transparent too: the walk
follows its non-constant input.
"""

from __future__ import annotations

from dataclasses import dataclass

from onnxcompress.ops.registry import OpRegistry

#: roles an output's producer can have (see OutputHint)
ROLES = ("probabilities", "log_probabilities", "sigmoid", "normalized", "layer_norm", "linear", "decision",
         "recurrent", "transparent", "affine")


@dataclass(frozen=True)
class OutputHint:
    """``role``: what the producer's values are; ``state_outputs``: output indices that carry a recurrent state
    (recurrent ops only)."""

    role: str
    state_outputs: tuple[int, ...] = ()

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"unknown output role {self.role!r}")


OUTPUT_HINTS: OpRegistry[OutputHint] = OpRegistry("output hints")
OUTPUT_HINTS.register("Softmax", OutputHint("probabilities"))
OUTPUT_HINTS.register("LogSoftmax", OutputHint("log_probabilities"))
OUTPUT_HINTS.register_all("Sigmoid HardSigmoid", OutputHint("sigmoid"))
OUTPUT_HINTS.register("LpNormalization", OutputHint("normalized"))
OUTPUT_HINTS.register("LayerNormalization", OutputHint("layer_norm"), since=17)
OUTPUT_HINTS.register_all("LayerNormalization SimplifiedLayerNormalization SkipLayerNormalization "
                          "SkipSimplifiedLayerNormalization", OutputHint("layer_norm"), domain="com.microsoft")
OUTPUT_HINTS.register_all("Gemm MatMul", OutputHint("linear"))
OUTPUT_HINTS.register_all("ArgMax ArgMin Greater Less Equal GreaterOrEqual LessOrEqual And Or Not Xor",
                          OutputHint("decision"))
OUTPUT_HINTS.register("LSTM", OutputHint("recurrent", state_outputs=(1, 2)))
OUTPUT_HINTS.register_all("GRU RNN", OutputHint("recurrent", state_outputs=(1,)))
OUTPUT_HINTS.register_all("Identity Reshape Flatten Squeeze Unsqueeze Transpose Dropout Cast", OutputHint("transparent"))
OUTPUT_HINTS.register_all("Add Sub Mul Div", OutputHint("affine"))


def output_hint(op: str, domain: str | None = "", opset: int | None = None) -> OutputHint | None:
    """The hint of ``op`` (None: the op says nothing about its output's task)."""
    return OUTPUT_HINTS.lookup(op, domain, opset)
