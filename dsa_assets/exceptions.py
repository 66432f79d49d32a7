"""One exception tree for the platform; every error says what was found and what was expected."""


class DSA110Error(Exception):
    """Base of every error the platform raises on purpose."""


class InvalidSubbandError(DSA110Error):
    """A file is not a usable DSA-110 subband (truncated, not HDF5, not UVH5, wrong layout)."""


class InconsistentGroupError(DSA110Error):
    """The subbands of one observation disagree (antennas, times, polarisations, frequencies)."""


class IncompleteGroupError(DSA110Error):
    """A group lacks subbands and policy forbids converting it partially."""


class ConversionError(DSA110Error):
    """Writing the Measurement Set failed; nothing was published to the output directory."""


class QueueError(DSA110Error):
    """The subband queue refused an operation (unknown group, illegal state change)."""
