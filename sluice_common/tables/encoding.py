"""Decode uploaded bytes: BOM, UTF-8, UTF-16 without BOM, cp1252, then charset-normalizer.

charset-normalizer alone guesses exotic code pages on short text (cp1006 for `José`, big5 for
cp1252 `São Paulo`), and a one-row prod request is short. Western text in cp1252 is by far
the most common non-UTF-8 upload, so it wins whenever its decoding reads like Western text;
other legacy encodings read as cp1252 give tell-tale mojibake (see `looks_western`).
"""

from __future__ import annotations

import re

import charset_normalizer

from sluice_common import error_codes
from sluice_common.errors import ApiError

BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
BINARY_SAMPLE = 64 * 1024  # characters checked for control characters
GUESS_SAMPLE = 256 * 1024  # bytes judged by looks_western and charset-normalizer

_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")
# cp1252 characters that Western text almost never holds but other encodings read as cp1252
# produce often: ƒ is every Shift-JIS katakana lead byte, ˆ‰†‡ are kanji lead bytes.
_RARE = frozenset("ƒ†‡ˆ‰˜¦¨¯¸¬¤")
# Symbols that sit inside words in real text (l’été, col·legi, soft hyphen, dashes).
_IN_WORD = frozenset("’‘´·–—\xad\xa0…")
# Symbols that may stand right before a word: ¿Qué, «Oui», „Ja“, °C.
_LEADING = frozenset("¿¡«»‹›“”„‚‘°•")
# Grave i and u never sit inside Western words (più, où end them); cp1250 ě and ů read as
# cp1252 put them there all the time (Němec -> Nìmec, Růžička -> Rùžièka).
_NOT_MID_WORD = frozenset("ìùÌÙ")
# cp1250 ř ě ů ň č read as cp1252; next to another accented letter they are Czech (Jiří ->
# Jiøí, Dvořák -> Dvoøák, Třebíč -> Tøebíè), pairs Western words do not have.
_CZECH = frozenset("øìùòèØÌÙÒÈ")


# Files people send instead of a CSV, by their first bytes: said by name, so the answer says
# what to do rather than "not text".
KNOWN_CONTAINERS = (
    (b"\x1f\x8b", "a gzip-compressed file: decompress it"),
    (
        b"PK\x03\x04",
        "a ZIP archive or an Excel workbook (.xlsx): unpack it, or export the sheet as CSV",
    ),
    (b"\xd0\xcf\x11\xe0", "an old Excel workbook (.xls): export the sheet as CSV"),
    (b"BZh", "a bzip2-compressed file: decompress it"),
    (b"\xfd7zXZ\x00", "an xz-compressed file: decompress it"),
    (b"\x28\xb5\x2f\xfd", "a zstd-compressed file: decompress it"),
    (b"PAR1", "a Parquet file: export it as CSV"),
    (b"%PDF", "a PDF document: export the table as CSV"),
)


def decode_text(raw: bytes) -> tuple[str, str]:
    """Decode bytes as text, detecting the encoding; raise ApiError for binary data."""
    if not raw.strip():
        raise ApiError(
            error_codes.EMPTY_FILE, "The uploaded file is empty: send a CSV with a header row."
        )
    for magic, what in KNOWN_CONTAINERS:
        if raw.startswith(magic):
            raise ApiError(error_codes.NOT_CSV, f"The upload is {what}, then send the CSV file.")
    for bom, encoding in BOMS:
        if raw.startswith(bom):
            return _decode(raw, encoding), encoding
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        if not _looks_binary(text):
            return text, "utf-8"
        # ASCII in UTF-16 without a BOM is valid UTF-8 full of NULs.
        found = _utf16_without_bom(raw)
        if found is None:
            raise _not_text()
        return found
    if b"\x00" in raw[:BINARY_SAMPLE] and (found := _utf16_without_bom(raw)):
        return found
    sample = raw[:GUESS_SAMPLE]
    try:
        western = looks_western(sample.decode("cp1252"))
    except UnicodeDecodeError:  # one of cp1252's five undefined bytes
        western = False
    if western:
        try:
            text = raw.decode("cp1252")
        except UnicodeDecodeError:
            pass  # an undefined byte past the sample: not cp1252 after all
        else:
            if not _looks_binary(text):
                return text, "cp1252"
    best = charset_normalizer.from_bytes(sample).best()
    if best is None:
        raise _not_text()
    return _decode(raw, best.encoding), best.encoding


def looks_western(text: str) -> bool:
    """True when non-ASCII characters sit in text the way they do in Western languages.

    Western words carry one or two accented letters among ASCII ones (São, Größe, ação).
    Cyrillic, Greek, CJK or Central European bytes read as cp1252 give runs of accented
    letters and symbols (Ïðèâåò, ±±¾©), symbols inside words (mo¿e, g³owa), or rare
    characters; more than 1 such character in 20 rules cp1252 out.
    """
    # Knowing the total up front lets mojibake stop at the first 5% of its characters.
    allowed = (len(text) - len(text.encode("ascii", "ignore"))) / 20
    suspect = 0
    for run in _NON_ASCII_RUN.finditer(text):
        if suspect > allowed:
            return False
        chars = run.group()
        if len(chars) > 2:
            # Runs of one symbol (€€€, ———) are Western too; runs of letters are not.
            if len(set(chars)) > 1 or chars.isalpha():
                suspect += len(chars)
            continue
        if len(chars) == 2 and chars.isalpha() and _CZECH.intersection(chars):
            suspect += 2
            continue
        start, end = run.span()
        before = text[start - 1] if start else " "
        after = text[end] if end < len(text) else " "
        for i, ch in enumerate(chars):
            prev = chars[i - 1] if i else before
            nxt = chars[i + 1] if i + 1 < len(chars) else after
            if ch in _RARE:
                suspect += 1
            elif ch.isalpha():
                suspect += ch in _NOT_MID_WORD and prev.isalpha() and nxt.isalpha()
            elif ch not in _IN_WORD and nxt.isalpha():
                suspect += prev.isalpha() or ch not in _LEADING
    return suspect <= allowed


def _utf16_without_bom(raw: bytes) -> tuple[str, str] | None:
    """UTF-16 text without a BOM, told by NULs: the high bytes of ASCII characters."""
    sample = raw[: BINARY_SAMPLE - BINARY_SAMPLE % 2]
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    # A CSV's delimiters, newlines and digits are ASCII, so one byte in ten or more of one
    # parity is NUL; the other parity has far fewer (U+xx00 characters are rare, not absent:
    # 一 is U+4E00).
    for nuls, others, encoding in ((odd, even, "utf-16-le"), (even, odd, "utf-16-be")):
        if nuls * 20 >= len(sample) and others * 4 <= nuls:
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError:
                return None
            return None if _looks_binary(text) else (text, encoding)
    return None


def _decode(raw: bytes, encoding: str) -> str:
    try:
        text = raw.decode(encoding)
    except (UnicodeDecodeError, LookupError) as err:
        raise _not_text() from err
    if _looks_binary(text):
        raise _not_text()
    return text


def _looks_binary(text: str) -> bool:
    """True when control characters (other than tab/CR/LF) make up over 1% of a sample."""
    sample = text[:BINARY_SAMPLE]
    controls = sum(1 for ch in sample if ch < " " and ch not in "\t\r\n")
    return controls > max(1, len(sample) // 100)


def _not_text() -> ApiError:
    return ApiError(
        error_codes.NOT_CSV,
        "The upload is not readable as text: send a CSV file "
        "(UTF-8 or another common text encoding).",
    )
