#!/usr/bin/python3
"""A scripted nn.Linear(D, K) with seeded random weights, for xfer's --head-init. Usage: make_head.py D K SEED OUT"""
import sys

import torch

d, k, seed, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.manual_seed(seed)
torch.jit.script(torch.nn.Linear(d, k)).save(out)
