"""The paper's experiments (App. H.2): a registry from names to experiments."""

from .base import PROFILES, Experiment, Results, Table, Verdict, expand_all
from .synthetic import EXP_1A, EXP_3B
from .toy import EXP_1B, EXP_2A, EXP_2B, EXP_3A, EXP_4A, EXP_4B

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in
                                      (EXP_1A, EXP_1B, EXP_2A, EXP_2B, EXP_3A, EXP_3B, EXP_4A, EXP_4B)}

__all__ = ["EXPERIMENTS", "PROFILES", "Experiment", "Results", "Table", "Verdict", "expand_all"]
