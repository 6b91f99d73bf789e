"""The paper's experiments (App. H.2): a registry from names to experiments."""

from .base import PROFILES, Experiment, Results, Table, Verdict, expand_all
from .lengthgen import EXP_LENGTH
from .synthetic import EXP_1A, EXP_3B
from .text import EXP_1A_TEXT, EXP_3B_TEXT
from .toy import EXP_1B, EXP_2A, EXP_2B, EXP_3A, EXP_4A, EXP_4B

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in
                                      (EXP_1A, EXP_1B, EXP_2A, EXP_2B, EXP_3A, EXP_3B, EXP_4A, EXP_4B,
                                       EXP_LENGTH, EXP_1A_TEXT, EXP_3B_TEXT)}
# what `sparsemem reproduce` runs when no experiment is named: everything that needs no corpus
DEFAULT_EXPERIMENTS = [name for name, e in EXPERIMENTS.items() if not e.needs_corpus]

__all__ = ["DEFAULT_EXPERIMENTS", "EXPERIMENTS", "PROFILES", "Experiment", "Results", "Table", "Verdict", "expand_all"]
