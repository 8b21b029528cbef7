"""The one home of op knowledge: registries keyed by (domain, op type, opset range).

``facts`` (weight/bias index, channel axes, group, transB; int8 kernel names), ``channel_rules`` and
``channel_fixups`` (how channels flow through each op, for pruning), ``quant_rules`` (what each op quantizes),
``folders`` (numpy evaluation for constant folding). Drivers elsewhere are op-agnostic.
"""
