"""What a parser is never given: lines too long, JSON nested too deeply, files too large to read whole.

The compiled JSON readers recurse without a bound (a few kilobytes of ``[[[[...`` cost
minutes and gigabytes, or crash the interpreter), so every file's bytes are scanned here
before any parser runs. The scan is vectorised: the positions of the newlines and of
the opening brackets, in slices of the buffer, show each line's length and how many
brackets it opens, which bounds its depth. Only a line that opens more than
``MAX_DEPTH`` brackets (brackets inside strings count too) gets the precise,
string-aware measure of its depth.
"""

from __future__ import annotations

import codecs

import numpy as np

MAX_DEPTH = 100  # of nested arrays and objects; real records have one or two
MAX_LINE_BYTES = 1 << 20  # a record is a few hundred bytes; 1 MiB is no record
MAX_READ_BYTES = 1 << 29  # a per-ticker file is read whole: at most 512 MiB (about 5 million bars)
SLICE = 1 << 22  # bytes scanned at a time: the scan's own memory stays small

_NEWLINE, _QUOTE, _BACKSLASH = 10, 34, 92
_OPEN = (91, 123)  # [ {
_CLOSE = (93, 125)  # ] }


def size_text(size: int) -> str:
    """``1 MiB``, ``1 GiB``, ``512 KiB``: the bounds as people read them."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} bytes"


def too_long(length: int) -> str:
    return f"a line of {length} bytes, longer than the {size_text(MAX_LINE_BYTES)} a record may have"


TOO_DEEP = f"invalid JSON (nested too deeply: more than {MAX_DEPTH} levels)"


_OUTLINE = bytes.maketrans(b"[", b"{")
_NOT_OUTLINE = bytes(b for b in range(256) if b not in b'{["\n')


def outline(data) -> bytes:
    """The bytes of JSON text that matter to its shape: every opening bracket (as ``{``),
    quote and newline, in order; a small fraction of the text, made at compiled speed."""
    return bytes(data).translate(_OUTLINE, _NOT_OUTLINE)


def line_problems(data, json: bool = True, first_line: int = 1, shape: bytes | None = None) -> dict[int, str]:
    """The lines no parser may be given: ``{line number: reason}`` (empty for the usual file).

    ``data`` is a buffer of whole lines (the first numbered ``first_line``); ``json``:
    also measure nesting depth (``shape``: the data's :func:`outline`, if made already).
    Two cheap tests first: a line longer than ``MAX_LINE_BYTES`` holds one of the
    aligned blocks of half that size, so some block has no newline; a line nested
    deeper than ``MAX_DEPTH`` opens that many brackets with no newline between them.
    Only when one fails are the lines measured.
    """
    size = len(data)
    long = size > MAX_LINE_BYTES and _block_without_newline(data)
    if json:
        if shape is None:
            shape = outline(data)
        json = b"{" * (MAX_DEPTH + 1) in shape.translate(None, b'"')
    if not (long or json):
        return {}
    problems: dict[int, str] = {}
    begin = 0
    while begin < size:
        # A window of whole lines of at most SLICE bytes: the positions measured in it
        # take memory in proportion to it, not to the file.
        end = data.rfind(b"\n", begin, begin + SLICE) + 1 if begin + SLICE < size else size
        if end <= begin:  # no newline in a whole slice: one line, longer than any record
            stop = data.find(b"\n", begin)
            end = size if stop < 0 else stop + 1
            problems[first_line] = too_long(end - begin - (stop >= 0))
        else:
            window = data[begin:end]
            if (len(window) > MAX_LINE_BYTES and _block_without_newline(window)) or \
                    (json and b"{" * (MAX_DEPTH + 1) in outline(window).translate(None, b'"')):
                problems.update(_measure(np.frombuffer(window, dtype=np.uint8), json, first_line))
        first_line += data.count(b"\n", begin, end)
        begin = end
    return problems


def _measure(byte: np.ndarray, json: bool, first_line: int) -> dict[int, str]:
    """:func:`line_problems` of a window of whole lines, measured."""
    ends = np.concatenate([np.flatnonzero(byte == _NEWLINE), [len(byte)]])
    starts = np.concatenate([[0], ends[:-1] + 1])
    problems = {int(i) + first_line: too_long(int(ends[i] - starts[i]))
                for i in np.flatnonzero(ends - starts > MAX_LINE_BYTES)}
    if json:
        at = np.flatnonzero((byte == _OPEN[0]) | (byte == _OPEN[1]))
        if len(at) > MAX_DEPTH:
            line = np.searchsorted(ends, at)  # the line of each opening bracket
            crowded = np.unique(line[MAX_DEPTH:][line[MAX_DEPTH:] == line[:-MAX_DEPTH]])
            for i in crowded.tolist():
                number = i + first_line
                if number not in problems and depth(byte[starts[i]:ends[i]]) > MAX_DEPTH:
                    problems[number] = TOO_DEEP
    return problems


def _block_without_newline(data) -> bool:
    half = MAX_LINE_BYTES // 2
    return any(data.find(b"\n", start, start + half) < 0 for start in range(0, len(data) - half + 1, half))


def depth(line: np.ndarray) -> int:
    """How deeply one line of JSON nests, as a parser reading it sees it: brackets inside
    strings do not count, and nothing after the first closing bracket too many does."""
    quote = line == _QUOTE
    backslash = line == _BACKSLASH
    if backslash.any():
        # A quote after an odd run of backslashes is escaped (inside a string; outside
        # one, the backslash itself stops the parser before the quote matters).
        position = np.arange(len(line))
        last_other = np.maximum.accumulate(np.where(backslash, -1, position))
        quotes = np.flatnonzero(quote)
        quotes = quotes[quotes > 0]
        run = (quotes - 1) - last_other[quotes - 1]
        quote[quotes[run % 2 == 1]] = False
    inside = (np.cumsum(quote) % 2).astype(bool)
    step = ((line == _OPEN[0]) | (line == _OPEN[1])).astype(np.int32)
    step -= (line == _CLOSE[0]) | (line == _CLOSE[1])
    step[inside] = 0
    level = np.cumsum(step)
    below = np.flatnonzero(level < 0)
    if len(below):
        level = level[:below[0]]
    return int(level.max(initial=0))


def file_problem(path, json: bool = True) -> tuple[int, str] | None:
    """The first line of a file (read in slices, never whole) no parser may be given, or None."""
    carry = b""
    first_line = 1
    with open(path, "rb") as f:
        while True:
            block = f.read(SLICE)
            data = carry + block
            if not block:
                cut = len(data)
            else:
                cut = data.rfind(b"\n") + 1
                if cut == 0 and len(data) <= MAX_LINE_BYTES:
                    carry = data
                    continue
                if cut == 0:  # one line longer than a record may be: measured on, not kept
                    cut = len(data)
            whole, carry = data[:cut], data[cut:]
            if whole:
                problems = line_problems(whole, json, first_line)
                if problems:
                    return next(iter(problems.items()))
                first_line += whole.count(b"\n")
            if not block:
                return None


def utf8_error(data) -> int | None:
    """The offset of the first byte of ``data`` that is not UTF-8 text, or None; decoded a
    slice at a time, so that no copy of the whole text is made."""
    if data.isascii():
        return None
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)
    for start in range(0, len(data), SLICE):
        try:
            decoder.decode(view[start:start + SLICE], final=start + SLICE >= len(data))
        except UnicodeDecodeError as exc:
            return max(0, start - len(decoder.getstate()[0]) + exc.start)
    return None


_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
         (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))


def wide_encoding(head: bytes) -> str | None:
    """``"UTF-16"`` or ``"UTF-32"`` when a file's first bytes show it is text in that
    encoding (by its byte order mark, or NUL bytes between ASCII characters), else None."""
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    sample = head[:4096]
    if len(sample) < 4 or b"\x00" not in sample[:4]:
        return None
    nul = np.frombuffer(sample[: len(sample) // 4 * 4], dtype=np.uint8).reshape(-1, 4) == 0
    share = nul.mean(axis=0)  # how often each of the four positions holds a NUL
    if (share[1:] > 0.9).all() and share[0] < 0.1 or (share[:3] > 0.9).all() and share[3] < 0.1:
        return "UTF-32"
    if share[1] > 0.9 and share[3] > 0.9 and share[0] < 0.1 and share[2] < 0.1 or \
            share[0] > 0.9 and share[2] > 0.9 and share[1] < 0.1 and share[3] < 0.1:
        return "UTF-16"
    return None


def encoding_problem(head: bytes) -> str | None:
    """The one-line reason a file of ``head`` is not read as text, for UTF-16 and UTF-32 files."""
    wide = wide_encoding(head)
    return None if wide is None else f"this file is {wide} encoded; save it as UTF-8 (pairscan reads UTF-8 text)"
