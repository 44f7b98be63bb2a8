# -*- test-case-name: tests.test_wire_pcap -*-
"""
Classic pcap capture files: the file header and one record per frame.

The flavour written is the one every reader takes: magic C{0xa1b2c3d4}
stored little-endian (so microsecond timestamps), version 2.4, C{thiszone}
and C{sigfigs} 0, link type 1 (Ethernet).  Each record is C{ts_sec},
C{ts_usec}, C{incl_len} (the bytes kept) and C{orig_len} (the frame's
length), then the kept bytes.

A snapshot length of 0 means "whole frames": the header then announces
L{MAX_SNAPLEN}, the largest libpcap and Wireshark accept, and no frame
vpnkit handles is longer.

The parser reads exactly this flavour back, for tests and round trips.
"""

from dataclasses import dataclass
from struct import Struct

from vpnkit.wire import MalformedError, TruncatedError

__all__ = [
    "MAGIC",
    "LINKTYPE_ETHERNET",
    "MAX_SNAPLEN",
    "DEFAULT_SNAPLEN",
    "FILE_HEADER_LENGTH",
    "RECORD_HEADER_LENGTH",
    "PcapFileHeader",
    "PcapRecord",
    "headerSnaplen",
    "fileHeader",
    "record",
    "parseFileHeader",
    "parseRecord",
    "parsePcap",
]

MAGIC = 0xA1B2C3D4
VERSION_MAJOR = 2
VERSION_MINOR = 4
LINKTYPE_ETHERNET = 1
# libpcap's MAXIMUM_SNAPLEN (tcpdump's "-s 0"); also Wireshark's limit.
MAX_SNAPLEN = 262144
# The reference vpnkit's --pcap-snaplen default.
DEFAULT_SNAPLEN = 128

_fileHeader = Struct("<IHHiIII")
_recordHeader = Struct("<IIII")
FILE_HEADER_LENGTH = _fileHeader.size
RECORD_HEADER_LENGTH = _recordHeader.size
_MAX_SECONDS = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class PcapFileHeader:
    versionMajor: int
    versionMinor: int
    thiszone: int
    sigfigs: int
    snaplen: int
    linktype: int


@dataclass(frozen=True, slots=True)
class PcapRecord:
    """
    One captured frame: C{data} is what was kept of a frame of
    C{originalLength} bytes.
    """

    seconds: int
    microseconds: int
    originalLength: int
    data: bytes


def headerSnaplen(snaplen):
    """
    The snapshot length a file header announces for C{snaplen} (0 means
    whole frames).

    @raise MalformedError: C{snaplen} is negative or over L{MAX_SNAPLEN}.
    """
    if not 0 <= snaplen <= MAX_SNAPLEN:
        raise MalformedError(f"snapshot length {snaplen} is not within 0..{MAX_SNAPLEN}")
    return snaplen or MAX_SNAPLEN


def fileHeader(snaplen=DEFAULT_SNAPLEN):
    """
    The 24-byte file header for frames cut to C{snaplen} bytes (0: whole).
    """
    return _fileHeader.pack(
        MAGIC, VERSION_MAJOR, VERSION_MINOR, 0, 0, headerSnaplen(snaplen), LINKTYPE_ETHERNET
    )


def _timestamp(when):
    """
    C{(seconds, microseconds)} for C{when}, seconds since the epoch,
    clamped to what the format holds.
    """
    if not when > 0:  # also NaN
        return 0, 0
    if when >= _MAX_SECONDS:  # also infinity
        return _MAX_SECONDS, 999999
    micros = round(when * 1_000_000)
    seconds, micros = divmod(micros, 1_000_000)
    if seconds > _MAX_SECONDS:
        return _MAX_SECONDS, 999999
    return seconds, micros


def record(frame, when, snaplen=DEFAULT_SNAPLEN):
    """
    The record of C{frame} seen at C{when} (seconds since the epoch, a
    float), keeping its first C{snaplen} bytes (0: all of it).
    """
    limit = headerSnaplen(snaplen)
    n = len(frame)
    kept = frame[:limit] if n > limit else frame
    seconds, micros = _timestamp(when)
    return _recordHeader.pack(seconds, micros, len(kept), n) + kept


def parseFileHeader(data):
    """
    Parse the file header at the start of C{data}.

    @raise TruncatedError: fewer than 24 bytes.
    @raise MalformedError: another magic (big-endian, nanosecond, pcapng)
        or version, or a snapshot length of 0.
    """
    if len(data) < FILE_HEADER_LENGTH:
        raise TruncatedError(f"pcap file header of {len(data)} bytes")
    magic, major, minor, zone, sigfigs, snaplen, linktype = _fileHeader.unpack_from(data)
    if magic != MAGIC:
        raise MalformedError(f"pcap magic {magic:#010x} (only little-endian microsecond pcap)")
    if (major, minor) != (VERSION_MAJOR, VERSION_MINOR):
        raise MalformedError(f"pcap version {major}.{minor}")
    if snaplen == 0:
        raise MalformedError("pcap snapshot length 0")
    return PcapFileHeader(major, minor, zone, sigfigs, snaplen, linktype)


def parseRecord(data, offset=0, snaplen=MAX_SNAPLEN):
    """
    Parse the record at C{offset} of C{data}.

    @return: C{(PcapRecord, offset of the next record)}.
    @raise TruncatedError: the record header or its data is cut short.
    @raise MalformedError: microseconds over 999999, more bytes kept than
        the frame had, or more than C{snaplen}.
    """
    end = offset + RECORD_HEADER_LENGTH
    if offset < 0 or end > len(data):
        raise TruncatedError(f"pcap record header at {offset} of {len(data)} bytes")
    seconds, micros, included, original = _recordHeader.unpack_from(data, offset)
    if micros >= 1_000_000:
        raise MalformedError(f"pcap record with {micros} microseconds")
    if included > original:
        raise MalformedError(f"pcap record keeps {included} of {original} bytes")
    if included > snaplen:
        raise MalformedError(f"pcap record keeps {included} bytes, snapshot length {snaplen}")
    if end + included > len(data):
        raise TruncatedError(f"pcap record of {included} bytes at {offset} of {len(data)}")
    return PcapRecord(seconds, micros, original, bytes(data[end : end + included])), end + included


def parsePcap(data):
    """
    Parse a whole capture.

    @return: C{(PcapFileHeader, [PcapRecord, ...])}.
    @raise TruncatedError: the file ends inside the header or a record.
    @raise MalformedError: see L{parseFileHeader} and L{parseRecord}.
    """
    header = parseFileHeader(data)
    records = []
    offset = FILE_HEADER_LENGTH
    while offset < len(data):
        rec, offset = parseRecord(data, offset, header.snaplen)
        records.append(rec)
    return header, records
