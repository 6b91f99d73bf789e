"""The paper's experiments (App. H.2): a registry from names to experiments."""

from .base import PROFILES, Experiment, Results, Table, Verdict, expand_all
from .depth_lags import EXP_1A
from .dp_adaptive import EXP_3B
from .dp_fixed import EXP_3A
from .forensics import EXP_FORENSICS
from .heads_width import EXP_1B, EXP_2A, EXP_2B
from .lengthgen import EXP_LENGTH
from .memory import EXP_MEMORY
from .scaling import EXP_SCALING
from .tails import EXP_4A, EXP_4B
from .text import EXP_1A_TEXT, EXP_3B_TEXT

EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        EXP_1A,
        EXP_1B,
        EXP_2A,
        EXP_2B,
        EXP_3A,
        EXP_3B,
        EXP_4A,
        EXP_4B,
        EXP_LENGTH,
        EXP_FORENSICS,
        EXP_MEMORY,
        EXP_SCALING,
        EXP_1A_TEXT,
        EXP_3B_TEXT,
    )
}
# named groups `sparsemem reproduce` accepts besides experiment names
GROUPS = {
    "paper": ["1a_synthetic", "1b", "2a", "2b", "3a", "3b_synthetic", "4a", "4b"],
    # optimal-fit floors (2b, 4a, 4b), head-count scaling, states vs heads, lengths
    "theory": ["2b", "4a", "4b", "head_scaling", "curse_of_memory", "length_gen"],
    "text": ["1a_text", "3b_text"],
}
# what `sparsemem reproduce` runs when no experiment is named
DEFAULT_EXPERIMENTS = GROUPS["paper"] + ["length_gen", "forensics"]

__all__ = [
    "DEFAULT_EXPERIMENTS",
    "EXPERIMENTS",
    "GROUPS",
    "PROFILES",
    "Experiment",
    "Results",
    "Table",
    "Verdict",
    "expand_all",
]
