"""Low-level ops with a readable reference beside the fast path (selective scan, neighbour search).

Each op module exposes a `_ref` function in pure PyTorch that is the default on every device, and
a dispatcher that calls a fused CUDA kernel only when one is installed and the tensors are on CUDA.
"""
