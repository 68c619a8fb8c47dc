"""Why an upload is refused (no Pillow here: the API imports these, the hub stays light)."""


class UnsupportedEvidence(ValueError):
    """Not a JPEG, PNG, WebP or PDF, or a damaged one."""


class TooLarge(ValueError):
    """The upload is over the size limit."""
