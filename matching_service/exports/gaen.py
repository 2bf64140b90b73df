"""GAEN export files: `export.bin` (16-byte header + TemporaryExposureKeyExport protobuf) and
`export.sig` (TEKSignatureList, ECDSA P-256 over SHA-256 of export.bin), zipped together.

The protobuf subset is written by hand (a dozen fields; no protobuf runtime needed). The reader
is defensive: any truncation, bad varint, wrong wire type or oversized field raises ExportError.
"""
from __future__ import annotations

import dataclasses
import io
import struct
import zipfile

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from matching_service import ServiceError

HEADER = b"EK Export v1    "
SIGNATURE_ALGORITHM = "1.2.840.10045.4.3.2"  # ecdsa-with-SHA256
MAX_EXPORT_BYTES = 32 * 1024 * 1024
REPORT_TYPES = {0: "UNKNOWN", 1: "CONFIRMED_TEST", 2: "CONFIRMED_CLINICAL_DIAGNOSIS",
                3: "SELF_REPORT", 4: "RECURSIVE", 5: "REVOKED"}


class ExportError(ServiceError):
    """A GAEN export file that is malformed or fails its signature."""


@dataclasses.dataclass(frozen=True)
class ExposureKey:
    key_data: bytes
    transmission_risk_level: int = 0
    rolling_start_interval_number: int = 0
    rolling_period: int = 144
    report_type: int = 0
    days_since_onset_of_symptoms: int | None = None


@dataclasses.dataclass(frozen=True)
class SignatureInfo:
    verification_key_version: str = ""
    verification_key_id: str = ""
    signature_algorithm: str = SIGNATURE_ALGORITHM


@dataclasses.dataclass(frozen=True)
class Export:
    start_timestamp: int
    end_timestamp: int
    region: str
    batch_num: int = 1
    batch_size: int = 1
    signature_infos: tuple[SignatureInfo, ...] = ()
    keys: tuple[ExposureKey, ...] = ()


# --- protobuf wire format -------------------------------------------------------------------

def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int32 is encoded as 10-byte two's complement
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _tag(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _len_field(field: int, data: bytes) -> bytes:
    return _tag(field, 2) + _varint(len(data)) + data


def _int_field(field: int, value: int) -> bytes:
    return _tag(field, 0) + _varint(value)


def _zigzag(value: int) -> int:
    return (value << 1) ^ (value >> 31)


def _unzigzag(value: int) -> int:
    return (value >> 1) ^ -(value & 1)


def _to_int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _fields(data: bytes):
    """Yield (field number, wire type, value) for a protobuf message; raises ExportError."""
    view = memoryview(data)
    pos, end = 0, len(data)

    def varint():
        nonlocal pos
        result = shift = 0
        while True:
            if pos >= end:
                raise ExportError("truncated varint in export")
            byte = view[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7
            if shift >= 70:
                raise ExportError("overlong varint in export")

    while pos < end:
        key = varint()
        field, wire = key >> 3, key & 7
        if field == 0:
            raise ExportError("field number 0 in export")
        if wire == 0:
            yield field, wire, varint()
        elif wire == 1:
            if pos + 8 > end:
                raise ExportError("truncated fixed64 in export")
            yield field, wire, struct.unpack_from("<Q", view, pos)[0]
            pos += 8
        elif wire == 5:
            if pos + 4 > end:
                raise ExportError("truncated fixed32 in export")
            yield field, wire, struct.unpack_from("<I", view, pos)[0]
            pos += 4
        elif wire == 2:
            length = varint()
            if pos + length > end:
                raise ExportError("truncated field in export")
            yield field, wire, bytes(view[pos:pos + length])
            pos += length
        else:
            raise ExportError(f"unsupported wire type {wire} in export")


def _expect(wire: int, wanted: int, name: str) -> None:
    if wire != wanted:
        raise ExportError(f"field {name} has the wrong wire type")


def _text(value: bytes, name: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ExportError(f"{name} is not UTF-8") from error


# --- messages -------------------------------------------------------------------------------

def _encode_signature_info(info: SignatureInfo) -> bytes:
    out = b""
    if info.verification_key_version:
        out += _len_field(3, info.verification_key_version.encode())
    if info.verification_key_id:
        out += _len_field(4, info.verification_key_id.encode())
    out += _len_field(5, info.signature_algorithm.encode())
    return out


def _decode_signature_info(data: bytes) -> SignatureInfo:
    values = {}
    for field, wire, value in _fields(data):
        if field in (3, 4, 5):
            _expect(wire, 2, "signature_info")
            values[field] = _text(value, "signature info")
    return SignatureInfo(values.get(3, ""), values.get(4, ""), values.get(5, ""))


def _encode_key(key: ExposureKey) -> bytes:
    out = _len_field(1, key.key_data)
    out += _int_field(2, key.transmission_risk_level)
    out += _int_field(3, key.rolling_start_interval_number)
    if key.rolling_period != 144:
        out += _int_field(4, key.rolling_period)
    if key.report_type:
        out += _int_field(5, key.report_type)
    if key.days_since_onset_of_symptoms is not None:
        out += _int_field(6, _zigzag(key.days_since_onset_of_symptoms) & 0xFFFFFFFF)
    return out


def _decode_key(data: bytes) -> ExposureKey:
    values: dict = {}
    for field, wire, value in _fields(data):
        if field == 1:
            _expect(wire, 2, "key_data")
            values["key_data"] = value
        elif field in (2, 3, 4, 5):
            _expect(wire, 0, "key")
            name = {2: "transmission_risk_level", 3: "rolling_start_interval_number",
                    4: "rolling_period", 5: "report_type"}[field]
            values[name] = _to_int32(value)
        elif field == 6:
            _expect(wire, 0, "days_since_onset_of_symptoms")
            values["days_since_onset_of_symptoms"] = _unzigzag(value & 0xFFFFFFFF)
    if "key_data" not in values:
        raise ExportError("an exposure key has no key_data")
    return ExposureKey(**values)


def encode_export(export: Export) -> bytes:
    """export.bin bytes."""
    out = bytearray(HEADER)
    out += _tag(1, 1) + struct.pack("<Q", export.start_timestamp)
    out += _tag(2, 1) + struct.pack("<Q", export.end_timestamp)
    out += _len_field(3, export.region.encode())
    out += _int_field(4, export.batch_num)
    out += _int_field(5, export.batch_size)
    for info in export.signature_infos:
        out += _len_field(6, _encode_signature_info(info))
    for key in export.keys:
        out += _len_field(7, _encode_key(key))
    return bytes(out)


def decode_export(data: bytes) -> Export:
    """Parse export.bin bytes; raises ExportError on anything malformed."""
    if len(data) > MAX_EXPORT_BYTES:
        raise ExportError("export.bin is larger than 32 MiB")
    if not data.startswith(HEADER):
        raise ExportError("export.bin does not start with the 'EK Export v1' header")
    values: dict = {"start_timestamp": 0, "end_timestamp": 0, "region": ""}
    infos, keys = [], []
    for field, wire, value in _fields(data[len(HEADER):]):
        if field in (1, 2):
            _expect(wire, 1, "timestamp")
            values["start_timestamp" if field == 1 else "end_timestamp"] = value
        elif field == 3:
            _expect(wire, 2, "region")
            values["region"] = _text(value, "region")
        elif field in (4, 5):
            _expect(wire, 0, "batch")
            values["batch_num" if field == 4 else "batch_size"] = _to_int32(value)
        elif field == 6:
            _expect(wire, 2, "signature_infos")
            infos.append(_decode_signature_info(value))
        elif field == 7:
            _expect(wire, 2, "keys")
            keys.append(_decode_key(value))
        # Unknown fields (revised_keys = 8, ...) are skipped, as protobuf readers do.
    return Export(signature_infos=tuple(infos), keys=tuple(keys), **values)


def encode_signature_list(info: SignatureInfo, batch_num: int, batch_size: int,
                          signature: bytes) -> bytes:
    body = (_len_field(1, _encode_signature_info(info)) + _int_field(2, batch_num)
            + _int_field(3, batch_size) + _len_field(4, signature))
    return _len_field(1, body)


def decode_signature_list(data: bytes) -> list[tuple[SignatureInfo, bytes]]:
    out = []
    for field, wire, value in _fields(data):
        if field != 1:
            continue
        _expect(wire, 2, "signatures")
        info, signature = SignatureInfo(), b""
        for inner_field, inner_wire, inner in _fields(value):
            if inner_field == 1:
                _expect(inner_wire, 2, "signature_info")
                info = _decode_signature_info(inner)
            elif inner_field == 4:
                _expect(inner_wire, 2, "signature")
                signature = inner
        out.append((info, signature))
    return out


# --- signing and files ----------------------------------------------------------------------

def load_private_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ExportError("the export signing key must be an ECDSA P-256 private key")
    return key


def load_public_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as error:
        raise ExportError("the public key is not a PEM-encoded key") from error
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ExportError("the public key must be an ECDSA P-256 key")
    return key


def public_key_pem(private_key: ec.EllipticCurvePrivateKey) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def write_zip(export: Export, private_key: ec.EllipticCurvePrivateKey, info: SignatureInfo) -> bytes:
    """A signed export zip (export.bin + export.sig)."""
    export = dataclasses.replace(export, signature_infos=(info,))
    body = encode_export(export)
    signature = private_key.sign(body, ec.ECDSA(hashes.SHA256()))
    sig = encode_signature_list(info, export.batch_num, export.batch_size, signature)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("export.bin", body)
        archive.writestr("export.sig", sig)
    return buffer.getvalue()


def read_zip(data: bytes, public_key: ec.EllipticCurvePublicKey | None = None
             ) -> tuple[Export, bool]:
    """Parse an export zip; returns (export, signature verified). With `public_key` given, a
    missing or failing signature raises ExportError; without, the signature is not checked."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
            if "export.bin" not in names:
                raise ExportError("the zip has no export.bin")
            for name in ("export.bin", "export.sig"):
                if name in names and archive.getinfo(name).file_size > MAX_EXPORT_BYTES:
                    raise ExportError(f"{name} is larger than 32 MiB")
            body = archive.read("export.bin")
            sig = archive.read("export.sig") if "export.sig" in names else None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as error:
        raise ExportError(f"not a readable zip file ({error})") from error
    export = decode_export(body)
    if public_key is None:
        return export, False
    if sig is None:
        raise ExportError("the zip has no export.sig to verify")
    for _info, signature in decode_signature_list(sig):
        try:
            public_key.verify(signature, body, ec.ECDSA(hashes.SHA256()))
            return export, True
        except InvalidSignature:
            continue
    raise ExportError("export.sig does not verify with the given public key")
