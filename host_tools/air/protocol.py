"""Wire format between a virtual token's `bluetooth` module and the virtual air.

Kept tiny so the MicroPython side (boards/virtual/bluetooth.py, which repeats these numbers)
allocates little: every frame is `u16 length (LE) | u8 kind | body`, length counting kind+body.
Multi-byte integers are little-endian; addresses are 6 bytes in display order (MSB first),
as MicroPython's `bluetooth` module hands them to the firmware.

A connection starts with a 4-byte hello that says which protocol follows:
  b"TTA1" + frame HELLO   a virtual token (this protocol)
  b"HCI1" + u8 n + name   a host tool: H4 HCI packets follow, to a controller of its own
  b"CTL1"                 a control client: newline-delimited JSON requests and answers
"""

TOKEN_MAGIC = b"TTA1"
HCI_MAGIC = b"HCI1"
CONTROL_MAGIC = b"CTL1"

# token -> air (each answered by STATUS, except REGISTER which is answered by REGISTERED)
HELLO = 0x01  # json {"name": str}
ACTIVE = 0x02  # u8 on
SET_ADDR = 0x03  # u8 addr_type, addr[6]
ADVERTISE = 0x04  # u32 interval_us (0 = stop), u8 connectable, u8 n, adv[n], resp[...]
SCAN = 0x05  # i32 duration_ms (-1 = stop, 0 = forever), u32 interval_us, u32 window_us, u8 active
REGISTER = 0x06  # json [[service_uuid, [[char_uuid, flags], ...]], ...]
NOTIFY = 0x07  # u16 conn, u16 value_handle, u8 indicate, data
SET_VALUE = 0x08  # u16 value_handle, data
DISCONNECT = 0x09  # u16 conn

# air -> token
WELCOME = 0x81  # json {"time_scale": float}
STATUS = 0x82  # u8 command kind, i16 errno (0 = done)
REGISTERED = 0x83  # json [[value_handle, ...], ...]
SCAN_RESULT = 0x84  # u8 addr_type, addr[6], u8 adv_type, i8 rssi, data
SCAN_DONE = 0x85
CENTRAL_CONNECT = 0x86  # u16 conn, u8 addr_type, addr[6]
CENTRAL_DISCONNECT = 0x87  # u16 conn, u8 addr_type, addr[6]
GATTS_WRITE = 0x88  # u16 conn, u16 value_handle, data
MTU_EXCHANGED = 0x89  # u16 conn, u16 mtu

# errno values a command can fail with (as NimBLE errors surface in MicroPython: OSError)
EBUSY = 16
EINVAL = 22
ENOTCONN = 107

MAX_FRAME = 640
