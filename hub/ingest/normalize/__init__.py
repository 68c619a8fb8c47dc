"""Decode a message with its profile and normalize it into the canonical schema.

One module per concern: ``values`` (value specs: lookup, coercion, scale, range),
``timestamps`` (device time formats and plausibility), ``points`` and ``messages`` (point and
message specs compiled, payload decoders), ``context`` (what values may depend on besides the
payload), ``normalizer`` (the stage itself). The named functions profiles refer to
(converters, derived values, site lookups) are one registry: ``hub.profiles.functions``.
"""

from hub.ingest.normalize.normalizer import Normalizer, status_point
from hub.ingest.normalize.refused import Refused

__all__ = ["Normalizer", "Refused", "status_point"]
