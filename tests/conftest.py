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
