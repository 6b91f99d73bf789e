"""The field types every config schema shares: numbers that refuse booleans, strict models."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is a boolean; give a number")
    return value


def _only_bool(value: Any) -> Any:
    if not isinstance(value, bool):
        raise ValueError("give true or false")
    return value


# Numbers that refuse booleans (YAML's `true` would otherwise become 1) and flags that refuse numbers;
# with allow_inf_nan off, every float is finite.
Int = Annotated[int, BeforeValidator(_not_bool)]
Float = Annotated[float, BeforeValidator(_not_bool)]
Bool = Annotated[bool, BeforeValidator(_only_bool)]
SEED_MAX = 2**63 - 1  # seeds are 64-bit signed integers (torch.Generator, numpy)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False, allow_inf_nan=False)


def kind_shorthand(value: Any) -> Any:
    return {"kind": value} if isinstance(value, str) else value


def listify(value: Any) -> Any:
    return [value] if isinstance(value, (str, int, float)) and not isinstance(value, bool) else value


Strict = _Strict
