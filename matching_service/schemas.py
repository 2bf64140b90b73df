"""Shared request-model building blocks: strict types, base64 fields, bounded strings."""
from __future__ import annotations

import base64
import binascii
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

SERIAL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{2,31}$"

Serial = Annotated[str, StringConstraints(pattern=SERIAL_PATTERN)]
Text = Annotated[str, StringConstraints(max_length=200)]
UInt32 = Annotated[int, Field(ge=0, le=0xFFFFFFFF)]
UnixTime = Annotated[int, Field(ge=0, le=1 << 40)]


def decode_base64(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError("not valid base64") from error


def b64_of_length(length: int):
    def check(value: str) -> str:
        if len(decode_base64(value)) != length:
            raise ValueError(f"must decode to exactly {length} bytes")
        return value
    return Annotated[str, StringConstraints(max_length=4 * ((length + 2) // 3)),
                     AfterValidator(check)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
