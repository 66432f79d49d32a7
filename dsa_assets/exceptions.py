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


class CalibrationError(DSA110Error):
    """Calibration could not be solved or applied; the message says why."""


class FlaggingError(DSA110Error):
    """The Measurement Set cannot be flagged (missing, not writable, no DATA column)."""


class ImagingError(DSA110Error):
    """The imager failed or produced no image; the message carries the end of its log."""


class MosaicError(DSA110Error):
    """A mosaic cannot be made (no inputs, unreadable image)."""


class PhotometryError(DSA110Error):
    """An image cannot be measured (missing file, no beam in the header)."""


class SettingsError(DSA110Error):
    """A setting is missing or has a value it does not accept; the message names the option."""


class ProductNameError(DSA110Error):
    """A product was asked for under a malformed key (not an observation id or partition key)."""


class CatalogueError(DSA110Error, ValueError):
    """A reference catalogue cannot be used; the message lists each bad row with its line number."""


class ProductsError(DSA110Error):
    """The products database cannot be opened as asked (a reader found no database)."""
