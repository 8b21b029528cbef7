"""Train and export models/resnet_mnist.onnx (ResNet-style CNN with BatchNorm).

Usage (by hand, not in CI):  python models/build_resnet_mnist.py
Needs the ``models`` extra (torch==2.13.0 CPU). Deterministic (seed 0, 2 threads).

Topology (input 1x28x28; 13 Conv, 10 BatchNormalization, 4 residual Add):
  stem      Conv3x3 1->32, BN, ReLU                                   28x28
  block1    [Conv3x3 s2 32->48, BN, ReLU, Conv3x3 48->48, BN]
              + [Conv1x1 s2 32->48, BN] (projection), ReLU             14x14
  dwsep     [DWConv3x3 group=48, BN, ReLU6, Conv1x1 48->48, BN] + x,
              ReLU6 (Clip 0..6)                                        14x14
  block2    [Conv3x3 s2 48->64, BN, ReLU, Conv3x3 64->64, BN]
              + [Conv1x1 s2 48->64, BN] (projection), ReLU              7x7
  inception [Conv1x1 64->24 | Conv1x1 64->16, ReLU, Conv3x3 16->24
              | Conv3x3 64->16] -> Concat(axis=1) -> BN, + x, ReLU       7x7
  head      GlobalAveragePool -> Flatten -> Gemm 64->10
Fan-out: the stem, dwsep and block1 outputs each feed a residual branch conv plus
a skip (identity Add or 1x1 projection conv); the block2 output feeds four
consumers (three inception branches + the skip Add).
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import mnist_data  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import zoo_common as zc  # noqa: E402

OUT = os.path.join(HERE, "resnet_mnist.onnx")
HP = dict(epochs=20, lr=3e-3, weight_decay=5e-4, batch_size=64,
          label_smoothing=0.05, warmup_epochs=1, optimizer="AdamW",
          schedule="linear warmup + cosine", augmentation="rotation +-12deg, "
          "shift +-2.5px, scale 0.9-1.1 (affine_grid/grid_sample)", seed=0)


def conv_bn(cin, cout, k, stride=1, groups=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout))


class Basic(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.c1 = conv_bn(cin, cout, 3, stride)
        self.c2 = conv_bn(cout, cout, 3)
        self.proj = conv_bn(cin, cout, 1, stride) if (stride != 1 or cin != cout) else None
        self.relu = nn.ReLU()

    def forward(self, x):
        skip = x if self.proj is None else self.proj(x)
        return self.relu(self.c2(self.relu(self.c1(x))) + skip)


class DWSep(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dw = conv_bn(c, c, 3, groups=c)
        self.pw = conv_bn(c, c, 1)
        self.act = nn.ReLU6()

    def forward(self, x):
        return self.act(self.pw(self.act(self.dw(x))) + x)


class Inception(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.b1 = nn.Conv2d(c, 24, 1, bias=False)
        self.b2a = nn.Conv2d(c, 16, 1, bias=False)
        self.b2b = nn.Conv2d(16, 24, 3, padding=1, bias=False)
        self.b3 = nn.Conv2d(c, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()

    def forward(self, x):
        y = torch.cat([self.b1(x), self.b2b(self.relu(self.b2a(x))), self.b3(x)], dim=1)
        return self.relu(self.bn(y) + x)


class ResNetMNIST(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(conv_bn(1, 32, 3), nn.ReLU())
        self.block1 = Basic(32, 48, stride=2)
        self.dwsep = DWSep(48)
        self.block2 = Basic(48, 64, stride=2)
        self.incep = Inception(64)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.stem(x)
        x = self.block1(x)
        x = self.dwsep(x)
        x = self.block2(x)
        x = self.incep(x)
        return self.fc(torch.flatten(self.pool(x), 1))


def main():
    zc.seed_everything(0)
    splits = mnist_data.get_splits()
    model = ResNetMNIST()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"ResNetMNIST: {n_params} parameters")
    zc.build(model, splits, OUT, HP, build_script="models/build_resnet_mnist.py", n_params=n_params,
             description="ResNet-style CNN with unfused BatchNorm, residual Adds, depthwise-separable block, "
             "inception-style Concat block, ReLU/ReLU6(Clip), GlobalAveragePool->Flatten->Gemm head",
             check_ops=_check_ops)


def _check_ops(hist):
    assert hist.get("BatchNormalization", 0) == 10 and hist.get("Conv", 0) == 13


if __name__ == "__main__":
    main()
