#!/usr/bin/python3
"""The tiny CNN of the PJRT tests: two conv-BN-ReLU blocks and a global average pool (16 features), small enough that
its exported train step is tens of KB and a 20-step trial takes seconds, with BatchNorm so running statistics are
tested. One definition for both sides: Debian's torch 1.13 scripts it as an xfer backbone (LibTorch loads it), the
exporter (tools/export_pjrt.py, torch 2.8) traces it to StableHLO.

    /usr/bin/python3 tools/tiny_cnn.py OUT.pt        # TorchScript backbone, random init from seed 0

Not in xfer's catalog: a spec names it with its own imagenet_top1.
"""
import os
import sys

import torch
from torch import nn


class TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))
        x = torch.relu(self.bn2(self.conv2(x)))
        return x.mean(dim=(2, 3))


FEATURE_DIM = 16


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: tiny_cnn.py OUT.pt")
    out = sys.argv[1]
    torch.manual_seed(0)
    m = TinyCNN().eval()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    torch.jit.script(m).save(out)


if __name__ == "__main__":
    main()
