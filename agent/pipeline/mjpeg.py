"""The JPEG frames of an MJPEG video, found without OpenCV: the board's Pillow-only path for video files.

Two containers are read: AVI holding MJPEG (RIFF 'AVI ', each frame a '##dc' or '##db' chunk inside LIST 'movi',
OpenDML 'AVIX' extensions included; what cv2.VideoWriter writes for fourcc MJPG into .avi) and a raw MJPEG stream
(JPEG files one after the other, as `ffmpeg -f mjpeg` or a camera dump writes them). Each frame is handed on as
its JPEG bytes, for Pillow to decode.

Written here rather than taken from a library: the maintained demuxers (PyAV, imageio-ffmpeg, OpenCV itself) bring
FFmpeg, which is exactly what a board without OpenCV lacks, and none of the pure-Python readers is maintained for
Python 3.8 with numpy only. Both formats are small: a RIFF chunk walk, and JPEG's marker segments.
"""

from __future__ import annotations

import struct
from typing import Any, Iterator, Optional, Tuple

# fourcc codes (strf biCompression) under which AVI files carry motion JPEG.
JPEG_CODECS = ("MJPG", "JPEG", "AVRN", "LJPG", "DMB1")
# The containers recognized by their first bytes only to name them in an error: (magic, offset, name).
OTHER_CONTAINERS = ((b"ftyp", 4, "an MP4/QuickTime"), (b"\x1a\x45\xdf\xa3", 0, "a Matroska/WebM"),
                    (b"FLV", 0, "an FLV"), (b"\x00\x00\x01\xba", 0, "an MPEG program stream"))
SOI = b"\xff\xd8"

Span = Tuple[int, int]  # (start, end) of one frame's JPEG bytes in the file


def container(data: Any) -> str:
    """What the video's first bytes say it is: "avi", "mjpeg", or another container's name (for an error)."""
    head = bytes(data[:16])
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head[:3] == SOI + b"\xff":
        return "mjpeg"
    for magic, offset, name in OTHER_CONTAINERS:
        if head[offset:offset + len(magic)] == magic:
            return name
    return "an unrecognized"


def avi_codec(data: Any) -> Tuple[Optional[str], str]:
    """(the two-digit stream number of the AVI's first video stream, its codec fourcc); (None, "none") without one.

    The codec is strf's biCompression (strh's fccHandler is left blank by some writers)."""
    riff = next(_chunks(data, 0, len(data)))
    hdrl = next(((start, end) for fourcc, start, end in _chunks(data, 12, riff[2])
                 if fourcc == b"LIST" and bytes(data[start:start + 4]) == b"hdrl"), None)
    if hdrl is None:
        return None, "none"
    streams = [(start, end) for fourcc, start, end in _chunks(data, hdrl[0] + 4, hdrl[1])
               if fourcc == b"LIST" and bytes(data[start:start + 4]) == b"strl"]
    for number, (start, end) in enumerate(streams):
        parts = {fourcc: (part_start, part_end) for fourcc, part_start, part_end in _chunks(data, start + 4, end)}
        strh, strf = parts.get(b"strh"), parts.get(b"strf")
        if strh and strf and bytes(data[strh[0]:strh[0] + 4]) == b"vids":
            codec = bytes(data[strf[0] + 16:strf[0] + 20]).decode("latin-1").strip("\x00 ")
            return "%02d" % number, codec
    return None, "none"


def avi_frames(data: Any, stream: str) -> Iterator[Span]:
    """The frames of video stream `stream` ("00") of an AVI, in file order, across the RIFF 'AVI ' and 'AVIX' parts.

    Chunks of no bytes are skipped: AVI writers use them for a repeated (dropped) frame, which has no picture."""
    wanted = (stream.encode() + b"dc", stream.encode() + b"db")
    for fourcc, start, end in _chunks(data, 0, len(data)):
        if fourcc != b"RIFF":
            continue
        for inner, movi_start, movi_end in _chunks(data, start + 4, end):
            if inner == b"LIST" and bytes(data[movi_start:movi_start + 4]) == b"movi":
                yield from _movi(data, movi_start + 4, movi_end, wanted)


def _movi(data: Any, start: int, end: int, wanted: Tuple[bytes, bytes]) -> Iterator[Span]:
    """Frame chunks of a 'movi' list; its 'rec ' groups are walked into."""
    for fourcc, chunk_start, chunk_end in _chunks(data, start, end):
        if fourcc == b"LIST":
            yield from _movi(data, chunk_start + 4, chunk_end, wanted)
        elif fourcc in wanted and chunk_end > chunk_start:
            yield chunk_start, chunk_end


def _chunks(data: Any, start: int, end: int) -> Iterator[Tuple[bytes, int, int]]:
    """(fourcc, payload start, payload end) of each RIFF chunk in data[start:end]; a LIST's payload begins with its
    type. A size running past the end (a file cut short) is cut at the end."""
    position = start
    while position + 8 <= end:
        size = struct.unpack_from("<I", data, position + 4)[0]
        payload = position + 8
        yield bytes(data[position:position + 4]), payload, min(payload + size, end)
        position = payload + size + (size & 1)  # chunks are padded to an even size


def stream_frames(data: Any) -> Iterator[Span]:
    """The JPEG files of a raw MJPEG stream, in order. Bytes between two files (multipart boundaries) are skipped;
    a last file cut short is left out, as players do."""
    position = data.find(SOI + b"\xff")
    while position >= 0:
        end = jpeg_end(data, position)
        if end is None:
            return
        yield position, end
        position = data.find(SOI + b"\xff", end)


def jpeg_end(data: Any, start: int) -> Optional[int]:
    """Where the JPEG file beginning at `start` ends (after its EOI marker); None if it is cut short.

    Marker segments are stepped over by their lengths, so an EXIF thumbnail (a whole JPEG inside APP1) does not end
    the file early; the entropy-coded data after each SOS runs to the next marker that is neither a stuffed 0xFF00
    nor a restart marker."""
    size = len(data)
    position = start + 2
    while position + 2 <= size:
        if data[position] != 0xFF:
            return None  # not a marker where one must be: a damaged file
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
        elif marker == 0xD9:
            return position + 2
        elif 0xD0 <= marker <= 0xD7 or marker == 0x01:
            position += 2
        else:
            if position + 4 > size:
                return None
            position += 2 + struct.unpack_from(">H", data, position + 2)[0]
            if marker == 0xDA:
                position = _scan_end(data, position)
    return None


def _scan_end(data: Any, position: int) -> int:
    """The first marker after entropy-coded data starting at `position` (len(data) if there is none)."""
    size = len(data)
    while True:
        position = data.find(b"\xff", position)
        if position < 0 or position + 1 >= size:
            return size
        following = data[position + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
            position += 1 if following == 0xFF else 2
            continue
        return position


def unreadable(data: Any) -> Optional[str]:
    """What the video is when this module cannot read it (None: it can): checked when the source is opened, so a
    video that needs OpenCV is refused before any frame is timed."""
    kind = container(data)
    if kind == "mjpeg":
        return None
    if kind != "avi":
        return f"{kind} video"
    stream, codec = avi_codec(data)
    if stream is None:
        return "an AVI without a video stream"
    if codec.upper() not in JPEG_CODECS:
        return f"an AVI of {codec or 'unnamed'} video (not MJPEG)"
    return None


def frames(data: Any) -> Iterator[Span]:
    """Every frame of a video that unreadable() accepts, in order."""
    if container(data) == "mjpeg":
        return stream_frames(data)
    stream, _ = avi_codec(data)
    return avi_frames(data, stream or "00")
