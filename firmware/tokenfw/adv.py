# The GAEN advertisement on air: building our own 31-byte payload and finding the RPI and AEM
# in whatever a scan reports.
#
#   02 01 1A              flags (LE General Discoverable off, BR/EDR not supported)
#   03 03 6F FD           complete list of 16-bit service UUIDs: 0xFD6F
#   17 16 6F FD rpi aem   service data for 0xFD6F: 16-byte RPI, 4-byte AEM
#
# parse_gaen() runs for every report the radio hears (hundreds per scan window in a crowd), so
# it walks the AD structures by index over the caller's buffer and allocates only its result.
# Inputs it must survive without raising (the air is open to anyone):
# - a zero length byte: the Core spec's early end of data (the rest is padding); stop there;
# - a length that runs past the end of the data: malformed report, ignored (None);
# - service data for 0xFD6F with the wrong length (truncated or padded): not a GAEN structure;
# - service data for another UUID, other AD types, structures in any order, no flags at all
#   (the spec says receivers must not require flags and must tolerate extra or reordered
#   structures), no UUID list (we key on the service data alone);
# - two 0xFD6F service data structures: ambiguous, ignored (None);
# - input longer than any advertising report can be (> 255 bytes), or not a bytes-like
#   object at all: None.
try:
    from micropython import const
except ImportError:  # CPython
    def const(value):
        return value

_AD_FLAGS = const(0x01)
_AD_UUID16_COMPLETE = const(0x03)
_AD_SERVICE_DATA_UUID16 = const(0x16)
_GAEN_UUID_LO = const(0x6F)  # 0xFD6F little-endian
_GAEN_UUID_HI = const(0xFD)
_GAEN_SERVICE_DATA_LEN = const(23)  # type + UUID (2) + RPI (16) + AEM (4)
_RPI_SIZE = const(16)
_AEM_SIZE = const(4)
_BUFFER_TYPES = (bytes, bytearray, memoryview)
MAX_ADV_DATA = const(255)
PAYLOAD_SIZE = const(31)

_HEADER = bytes((2, _AD_FLAGS, 0x1A,
                 3, _AD_UUID16_COMPLETE, _GAEN_UUID_LO, _GAEN_UUID_HI,
                 _GAEN_SERVICE_DATA_LEN, _AD_SERVICE_DATA_UUID16, _GAEN_UUID_LO, _GAEN_UUID_HI))


def gaen_payload(rpi, aem):
    """The exact 31-byte GAEN advertising payload for `rpi` (16 bytes) and `aem` (4 bytes)."""
    if len(rpi) != _RPI_SIZE or len(aem) != _AEM_SIZE:
        raise ValueError("GAEN payload needs a 16-byte RPI and a 4-byte AEM")
    return _HEADER + bytes(rpi) + bytes(aem)


def find_gaen(adv_data):
    """Offset of the RPI inside `adv_data` when it carries exactly one well-formed 0xFD6F
    service data structure, else -1. Allocates nothing."""
    if not isinstance(adv_data, _BUFFER_TYPES):
        return -1
    end = len(adv_data)
    if end > MAX_ADV_DATA:
        return -1
    found = -1
    i = 0
    while i < end:
        length = adv_data[i]
        if length == 0:
            break  # early end of significant data; what follows is padding
        nxt = i + 1 + length
        if nxt > end:
            return -1  # structure runs past the end: malformed report
        if (adv_data[i + 1] == _AD_SERVICE_DATA_UUID16 and length >= 3
                and adv_data[i + 2] == _GAEN_UUID_LO and adv_data[i + 3] == _GAEN_UUID_HI):
            if length != _GAEN_SERVICE_DATA_LEN:
                return -1  # truncated or padded GAEN service data: not a valid identifier
            if found >= 0:
                return -1  # two identifiers in one report: cannot tell which is real
            found = i + 4
        i = nxt
    return found


def parse_gaen(adv_data):
    """(rpi, aem) as new bytes objects when `adv_data` is a GAEN advertisement, else None.
    Never raises (see the edge cases at the top of this module)."""
    start = find_gaen(adv_data)
    if start < 0:
        return None
    if type(adv_data) is not bytes:  # slicing bytes copies once; other buffers via a view
        adv_data = memoryview(adv_data)
        return (bytes(adv_data[start:start + _RPI_SIZE]),
                bytes(adv_data[start + _RPI_SIZE:start + _RPI_SIZE + _AEM_SIZE]))
    return adv_data[start:start + _RPI_SIZE], adv_data[start + _RPI_SIZE:start + _RPI_SIZE + _AEM_SIZE]
