"""Request validation shared by the routes: text UTF-8 can encode, finite numbers, and a 422 that can always be written.

JSON may spell a lone UTF-16 surrogate (`"\\ud800"`). Python decodes it into a str that UTF-8
cannot encode: a tokenizer or a Kafka record then fails on it (a 500), and so did FastAPI's own
422 handler, which echoes the input in `detail[].input`. `Utf8Text` refuses such text as a 422;
`request_validation_error` writes FastAPI's 422 body as ASCII JSON, the surrogate an escape.

Python's JSON parser also reads `NaN`, `Infinity`, `-Infinity` and numbers too large for a
float (`1e400` is infinity), which strict JSON cannot write back: echoed in `detail[].input`
they failed the 422 itself (a 500). Float fields are pydantic's `FiniteFloat` ("Input should be
a finite number"), and the handler echoes any such number as JavaScript spells it, a string.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

from fastapi import Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator


def _encodable(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"text holds a lone surrogate at character {exc.start}: not valid unicode") from exc
    return text


Utf8Text = Annotated[str, AfterValidator(_encodable)]


class AsciiJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


async def request_validation_error(request: Request, exc: RequestValidationError) -> AsciiJSONResponse:
    return AsciiJSONResponse(
        {"detail": writable(jsonable_encoder(exc.errors()))}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT
    )


def writable(value: Any) -> Any:
    """`value` with every NaN or infinity (which strict JSON cannot write) spelled as JavaScript does, a string."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: writable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [writable(item) for item in value]
    return value
