"""Save images in the real formats (xen-reference §5.1 and §3.3).

xl: the 32-byte magic, byte-order marker 0x01020304 in host order,
mandatory flags (JSON config, stream v2), optional flags, optional data
length, config length, then the NUL-terminated JSON config, then the libxl
migration stream, which starts with the big-endian "LibxlFmt" ident,
version 2 and an options word.  xm: "LinuxGuestRecord", a big-endian int32
length, the SXP config.

The simulated memory image that follows is scaled down (1 KiB per GiB of
guest memory) and ends with a marker, so that a file cut short by a full
disk is recognisably truncated when it is restored.
"""

from __future__ import annotations

import struct

from .simerrors import SimExit

# The same bytes as xdcore.model.XL_SAVE_MAGIC / XM_SAVE_MAGIC (a test keeps them equal): importing
# xdcore.model would cost every simulated `xl save`/`restore` its dataclasses and enums.
XL_SAVE_MAGIC = b"Xen saved domain, xl format\n \0 \r"
XM_SAVE_MAGIC = b"LinuxGuestRecord"

BYTEORDER_MARKER = 0x01020304
XL_MANDATORY_FLAG_JSON = 1 << 0
XL_MANDATORY_FLAG_STREAMV2 = 1 << 1
XL_FLAGS = XL_MANDATORY_FLAG_JSON | XL_MANDATORY_FLAG_STREAMV2
LIBXL_IDENT = 0x4C6962786C466D74  # "LibxlFmt"
PAYLOAD_END = b"XDSIM-END-OF-STREAM\n"


def xl_header(config_json: str) -> tuple[bytes, int]:
    """The header + config bytes, and optional_data_len (for the 'Saving to' message)."""
    config = config_json.encode() + b"\0"
    optional_len = 4 + len(config)
    head = struct.pack("<32sIIII", XL_SAVE_MAGIC, BYTEORDER_MARKER, XL_FLAGS, 0, optional_len)
    return head + struct.pack("<I", len(config)) + config, optional_len


def payload(memory_kib: int, label: str = "xl") -> bytes:
    """The scaled-down migration stream: ident, version, options, filler, end marker."""
    size = max(64, memory_kib // 1024)  # 1 KiB per GiB
    head = struct.pack(">QII", LIBXL_IDENT, 2, 0)
    filler = (f"xdsim {label} memory image ".encode() * (size // 16 + 1))[:size]
    return head + filler + PAYLOAD_END


class _Value:
    """A small immutable record (what a frozen dataclass gives, without importing dataclasses)."""

    __slots__ = ()

    def __init__(self, *args):
        if len(args) != len(self.__slots__):
            raise TypeError(f"{type(self).__name__} takes {len(self.__slots__)} values, got {len(args)}")
        for name, value in zip(self.__slots__, args):
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError(f"cannot assign to field {name!r}")

    def _values(self) -> tuple:
        return tuple(getattr(self, n) for n in self.__slots__)

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self):
        return hash(self._values())

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in self.__slots__)})"


class XlImage(_Value):
    """What `xl restore` reads from an xl save image's header."""

    __slots__ = ("mandatory_flags", "optional_flags", "optional_data_len", "config_json", "complete")
    mandatory_flags: int
    optional_flags: int
    optional_data_len: int
    config_json: str
    complete: bool


def read_xl(path: str) -> XlImage:
    """Parse an xl image; raise SimExit with real xl's messages for a bad one."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise SimExit(1, "Can't open restore file: No such file or directory\n") from None
    except OSError as exc:
        raise SimExit(1, f"Can't open restore file: {exc.strerror}\n") from None
    if len(data) < 48 or data[:32] != XL_SAVE_MAGIC:
        raise SimExit(1, "File has wrong magic number - corrupt or for a different tool?\n")
    _magic, order, mflags, oflags, olen = struct.unpack_from("<32sIIII", data)
    if order != BYTEORDER_MARKER:
        raise SimExit(1, "File has wrong byte order\n")
    unknown = mflags & ~XL_FLAGS
    if unknown:
        raise SimExit(1, f"Savefile has mandatory flag(s) 0x{unknown:x} which are not supported; need newer xl\n")
    if len(data) < 48 + olen or olen < 4:
        raise SimExit(1, "Failed to read savefile header: truncated\n")
    (config_len,) = struct.unpack_from("<I", data, 48)
    config = data[52 : 52 + config_len].rstrip(b"\0").decode("utf-8", "replace")
    rest = data[48 + olen :]
    return XlImage(mflags, oflags, olen, config, rest.endswith(PAYLOAD_END))


def xm_image(sxp_config: str, memory_kib: int) -> tuple[bytes, bytes]:
    """(header with config, payload) of an xm save image."""
    config = sxp_config.encode()
    return XM_SAVE_MAGIC + struct.pack(">i", len(config)) + config, payload(memory_kib, "xm")


class XmImage(_Value):
    """What `xm restore` reads from an xm save image."""

    __slots__ = ("config_sxp", "complete")
    config_sxp: str
    complete: bool


def read_xm(path: str) -> XmImage:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise SimExit(1, f"Error: [Errno {exc.errno}] {exc.strerror}: '{path}'\n") from None
    if data[:16] != XM_SAVE_MAGIC:
        raise SimExit(1, f"Error: not a valid guest state file: found {data[:16].decode('latin-1')!r}\n")
    if len(data) < 20:
        raise SimExit(1, "Error: not a valid guest state file: config size read failed\n")
    (n,) = struct.unpack_from(">i", data, 16)
    config = data[20 : 20 + n].decode("utf-8", "replace")
    return XmImage(config, data.endswith(PAYLOAD_END))
