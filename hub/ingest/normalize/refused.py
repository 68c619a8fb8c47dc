"""The refusal of a message, raised inside normalization and caught once by the normalizer."""

from __future__ import annotations

# Tag values (device id, payload tags) that line protocol cannot carry: encode_point refuses
# them; refused here, the operator reads why (the pipeline's catch-all would say "internal").
BACKSLASH_END = "a backslash, which InfluxDB cannot store in a tag"


class Refused(Exception):
    """A message cannot be normalized; ``reason`` is a short code, the text is for people."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
