import os
import tempfile

import pytest
import torch

# keep torch's compile cache out of the system temp folder
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(tempfile.mkdtemp(prefix="sparsemem-inductor-")))
# and the text task's token files out of the home folder
os.environ.setdefault("SPARSEMEM_TOKEN_CACHE", tempfile.mkdtemp(prefix="sparsemem-tokens-"))
torch.set_num_threads(min(2, torch.get_num_threads()))
# no GPU: Triton kernels (models/flash.py) run through Triton's interpreter, which has to be chosen before
# anything imports triton (torch.compile may)
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from sparsemem.config import ATTENTION_KINDS, RPE_TYPES, TMX_RPE_TYPES  # noqa: E402

MODEL_COMBOS = [
    (rpe, att, norm)
    for att in ATTENTION_KINDS
    for rpe in RPE_TYPES
    for norm in (True, False)
    if att != "tmx" or rpe in TMX_RPE_TYPES
]


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


def close(a, b, tol):
    """|a - b| <= tol, relative to b's largest entry when that exceeds 1."""
    scale = max(1.0, b.abs().max().item())
    return (a - b).abs().max().item() <= tol * scale


def triton_pair(rpe, sign="positive", *, dim=16, heads=2, dtype=torch.float32, device="cpu", **kw):
    """A reference attention and a Triton one (models/flash.py) with the same trained-looking parameters."""
    from sparsemem import ModelConfig
    from sparsemem.models.attention import Attention

    cfg = dict(dim=dim, heads=heads, rpe=rpe, rpe_sign=sign, rpe_buckets=3, rpe_max_distance=7, **kw)
    torch.manual_seed(0)
    ref = Attention(ModelConfig(**cfg, impl="reference")).to(dtype)
    with torch.no_grad():
        for p in ref.rpe.parameters():
            p.add_(0.3 * torch.randn(p.shape, dtype=dtype))
    fused = Attention(ModelConfig(**cfg, attention_kernel="triton")).to(dtype)
    fused.load_state_dict(ref.state_dict())
    return ref.to(device), fused.to(device)


def outputs_and_grads(model, x, w, autocast=False):
    """A model's output (as float32) and the gradients of sum(out * w) by the input and every parameter."""
    x = x.clone().requires_grad_()
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
        out = model(x)
    leaves = [x, *model.parameters()]
    return out.float(), torch.autograd.grad((out.float() * w).sum(), leaves)
