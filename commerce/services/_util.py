"""Small helpers shared by the services."""

from __future__ import annotations

import csv
import re
import unicodedata
import uuid
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import IO, TypeVar

from sqlalchemy import ColumnElement, func, select, text
from sqlalchemy.orm import InstrumentedAttribute, Session

from commerce.errors import NotFound, ValidationError
from commerce.sqltypes import CHOSEN_ID_PATTERN, SKELETON, skeleton

T = TypeVar("T")
# How far ahead of this process's clock a stored time may stand and still be taken as written "now" by
# another replica (clocks in sync drift by milliseconds; NTP steps and resumed VMs by hours or days).
CLOCK_SKEW = timedelta(minutes=5)
_COUNTRY = re.compile(r"^[A-Z]{2}$")
# A cell starting with one of these runs as a formula when the CSV is opened in a spreadsheet.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Characters that show as nothing or reorder the text after them: names and licence numbers with them
# looked like other ones in the console, the API and exports. Every format character (Unicode category Cf:
# zero-width space, bidi controls, BOM, soft hyphen, word joiner, tags...), line and paragraph
# separators, and the blank fillers that are letters or marks by category.
_INVISIBLE_OTHER = frozenset("\u034f\u115f\u1160\u3164\uffa0")
_JOINERS = frozenset("\u200c\u200d")  # ZWNJ, ZWJ
# A subdivision flag (England: U+1F3F4, tag letters, cancel tag) is the one use of the invisible tags: its
# tags spell a Unicode subdivision id (UTS #51: a region, 2 letters or 3 digits, then 1-4 letters or
# digits, lower case). Any run of tags passed before, so a "flag" could carry a hidden sentence.
_TAG_ALNUM = "[\U000e0030-\U000e0039\U000e0061-\U000e007a]"
_FLAG_TAGS = re.compile(
    f"\U0001f3f4(?:[\U000e0061-\U000e007a]{{2}}|[\U000e0030-\U000e0039]{{3}}){_TAG_ALNUM}{{1,4}}\U000e007f"
)
# Combining marks stacked on one character: real writing puts a few (Vietnamese 2, Hebrew points and
# accents, Tibetan stacks up to about 6); dozens draw over the lines above and below ("Zalgo" text).
MAX_STACKED_MARKS = 8
# Latin, Greek and Cyrillic letters below U+0600 and in these blocks: a joiner between two of them
# changes nothing visible (at most a ligature), so it only makes a look-alike.
_ALPHABETIC = ((0x1E00, 0x1FFF), (0x2C60, 0x2C7F), (0xA640, 0xA7FF), (0xAB30, 0xAB6F), (0xFF00, 0xFFEF))


# Cursive scripts (Arabic, Syriac, N'Ko, Mongolian): a letter there joins both sides unless listed below,
# from the Unicode Character Database's ArabicShaping.txt (Joining_Type; Python's unicodedata has none).
_CURSIVE = (
    (0x0600, 0x06FF),
    (0x0700, 0x074F),
    (0x0750, 0x077F),
    (0x07C0, 0x07FF),
    (0x08A0, 0x08FF),
    (0x1800, 0x18AF),
)
# Right-joining only (alef, dal, thal, reh, zain, waw, teh marbuta, yeh barree and their variants;
# Syriac alaph, dalath, he, waw, zain, ...) and non-joining letters (hamza, high hamza, low alef): a ZWNJ
# after one of these, or before a non-joining one, changes nothing.
_RIGHT_JOINING = frozenset(
    "\u0622\u0623\u0624\u0625\u0627\u0629\u062f\u0630\u0631\u0632\u0648\u0671\u0672\u0673\u0675\u0676\u0677"
    + "".join(map(chr, range(0x0688, 0x069A)))
    + "\u06c0"
    + "".join(map(chr, range(0x06C3, 0x06CC)))
    + "\u06cd\u06cf\u06d2\u06d3\u06d5\u06ee\u06ef"
    + "\u0710\u0715\u0716\u0717\u0718\u0719\u071e\u0728\u072a\u072c\u072f\u074d"
    + "\u0759\u075a\u075b\u076b\u076c\u0771\u0773\u0774\u0778\u0779"
    + "\u08aa\u08ab\u08ac\u08ae\u08b1\u08b2\u08b9"
)
_NON_JOINING = frozenset("\u0621\u0674\u08ad")
_VIRAMA = 9  # canonical combining class of viramas (Devanagari ्, Bengali, Tamil pulli, Myanmar, Khmer coeng)


def _invisible(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cf", "Zl", "Zp") or ch in _INVISIBLE_OTHER


def _emoji_side(ch: str) -> bool:
    """An emoji, skin-tone modifier or emoji presentation selector: ZWJ sequences join these."""
    return (unicodedata.category(ch) in ("So", "Sk") and ord(ch) >= 0x2000) or ch == "\ufe0f"


def _joining_script(ch: str) -> bool:
    """A letter or mark of a script where ZWJ chooses the shape (Arabic and Persian, Indic, ...): not
    Latin, Greek or Cyrillic."""
    cp = ord(ch)
    return (
        unicodedata.category(ch)[0] in "LM"
        and cp >= 0x0600
        and not any(lo <= cp <= hi for lo, hi in _ALPHABETIC)
    )


def _cursive_letter(ch: str) -> bool:
    cp = ord(ch)
    return unicodedata.category(ch) in ("Lo", "Lm") and any(lo <= cp <= hi for lo, hi in _CURSIVE)


def _base_before(text: str, i: int) -> str:
    """The letter before `text[i]`, past its vowel marks."""
    j = i - 1
    while j > 0 and unicodedata.category(text[j]) in ("Mn", "Me"):
        j -= 1
    return text[j]


def _zwnj_shows(text: str, i: int) -> bool:
    """Whether the ZWNJ at `text[i]` changes what is shown: it parts two cursive letters that would
    join (the first, past its vowel marks, joins on to the next: not alef, dal, reh, waw... nor hamza;
    the next joins back: not hamza), as in Persian `می‌خواهم`, or it stands beside a virama, where it
    keeps a conjunct apart (Devanagari `क्‌ष`, Bengali `র‌্য`)."""
    before, after = text[i - 1], text[i + 1]
    if (unicodedata.combining(before) == _VIRAMA and _joining_script(after)) or (
        unicodedata.combining(after) == _VIRAMA and _joining_script(before)
    ):
        return True
    base = _base_before(text, i)
    return (
        _cursive_letter(base)
        and _cursive_letter(after)
        and base not in _RIGHT_JOINING
        and base not in _NON_JOINING
        and after not in _NON_JOINING
    )


def _drop_silent_zwnj(text: str) -> str:
    """`text` without the ZWNJs that sit between two cursive letters yet part nothing (after alef, dal,
    reh, waw..., before hamza): Persian writers put one before every `ها` by habit (`دیوار‌ها`), and
    it shows nothing there, so it is dropped rather than refused, and the two spellings are one."""
    if "\u200c" not in text:
        return text
    drop = {
        i
        for i, ch in enumerate(text)
        if ch == "\u200c"
        and 0 < i < len(text) - 1
        and _cursive_letter(_base_before(text, i))
        and _cursive_letter(text[i + 1])
        and not _zwnj_shows(text, i)
    }
    return "".join(ch for i, ch in enumerate(text) if i not in drop) if drop else text


def _hides(text: str) -> bool:
    """Whether `text` holds a character that hides or disguises text. ZWJ is written between letters of
    joining scripts (Devanagari half forms) and inside emoji sequences (👩‍💻); ZWNJ only where it
    shows (`_zwnj_shows`: Persian `می‌خواهم`, Indic conjuncts). Anywhere else (between Latin letters,
    after an Arabic alef, between two Chinese characters, at an end, doubled) they are refused."""
    text = _FLAG_TAGS.sub("\U0001f3f4", text)
    for i, ch in enumerate(text):
        if not _invisible(ch):
            continue
        if ch in _JOINERS and 0 < i < len(text) - 1:
            before, after = text[i - 1], text[i + 1]
            if ch == "\u200c":
                if _zwnj_shows(text, i):
                    continue
            elif (_emoji_side(before) and _emoji_side(after)) or (
                _joining_script(before) and _joining_script(after)
            ):
                continue
        return True
    return False


def server_bounded(session: Session, now: datetime) -> datetime:
    """`now` (this process's clock), but never past the database server's clock on PostgreSQL: the time
    a clean-up by age deletes up to and the day a keyword ad's budget is charged to. A replica whose
    clock jumped forward deleted, as expired, rows the others wrote a minute ago (every console session,
    every Idempotency-Key), and billed clicks to the next day's budget before midnight; one clock shared
    by all replicas bounds it. SQLite runs on this host's clock: nothing to compare with."""
    if session.get_bind().dialect.name != "postgresql":
        return now
    server = session.scalar(select(func.now()))
    return min(now, server) if server is not None else now


def not_found(what: str, key) -> NotFound:
    """The one answer for a `what` row that does not exist, and for one the caller may not know exists."""
    return NotFound(f"unknown {what} {key!r}", code=f"{what.replace(' ', '_')}_not_found")


def get_or_404(session: Session, model: type[T], key, what: str) -> T:
    obj = session.get(model, key)
    if obj is None:
        raise not_found(what, key)
    return obj


def locked_or_404(session: Session, model: type[T], key, what: str, *, key_share: bool = False) -> T:
    """The row, locked until the transaction ends (PostgreSQL; SQLite's BEGIN IMMEDIATE already
    serializes writers) and re-read, so a change committed while waiting for the lock is seen. Only the
    model's table is locked (`OF`: a product loads its category by an outer join, which PostgreSQL does
    not lock). With `key_share`, FOR NO KEY UPDATE: for a change that leaves the key alone, rows that
    reference this one (a product's order lines, a campaign's clicks) are still inserted meanwhile (their
    foreign key check takes KEY SHARE, which FOR UPDATE blocks)."""
    lock = {"of": model, "key_share": key_share}
    obj = session.get(model, key, with_for_update=lock, populate_existing=True)
    if obj is None:
        raise not_found(what, key)
    return obj


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


def country_code(value: str, field: str = "country") -> str:
    code = (value or "").strip().upper()
    if not _COUNTRY.match(code):
        raise ValidationError(
            f"{field} must be an ISO 3166 alpha-2 code, got {value!r}", code="invalid_country"
        )
    return code


def _most_stacked_marks(text: str) -> int:
    """The longest run of non-spacing or enclosing combining marks in `text`."""
    most = run = 0
    for ch in text:
        run = run + 1 if unicodedata.category(ch) in ("Mn", "Me") else 0
        most = max(most, run)
    return most


def visible_text(text: str, field: str) -> str:
    """`text` as stored, refused (422) if it holds an invisible or direction-changing character
    (`_hides`) or more than `MAX_STACKED_MARKS` combining marks on one character; a ZWNJ that parts no
    letters of a cursive word is dropped (`_drop_silent_zwnj`)."""
    text = _drop_silent_zwnj(text)
    if _hides(text):
        raise ValidationError(
            f"{field} holds an invisible or direction-changing character", code="invisible_character"
        )
    if _most_stacked_marks(text) > MAX_STACKED_MARKS:
        raise ValidationError(
            f"{field} stacks more than {MAX_STACKED_MARKS} combining marks on one character",
            code="stacked_marks",
        )
    return text


def required_text(value: str | None, field: str, max_len: int) -> str:
    text = visible_text((value or "").strip(), field)
    if not text:
        raise ValidationError(f"{field} is required", code="missing_field")
    if len(text) > max_len:
        raise ValidationError(f"{field} is longer than {max_len} characters", code="field_too_long")
    return text


def normal_form(value: str | None) -> str:
    """Text in the one form look-alikes share: NFKC (full-width letters and digits become ASCII, a
    no-break or ideographic space a space, `ﬁ` is `fi`), any dash as `-`, runs of spaces as one, none at
    either end. Tabs and line breaks stay, for the rule of the field to refuse. ASCII is its own NFKC and
    its one dash is `-`: the storefront's fast path reads every shopper id through this."""
    text = value or ""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
        text = "".join("-" if unicodedata.category(c) == "Pd" else c for c in text)
    return re.sub(" {2,}", " ", text).strip(" ")


def licence_number(value: str | None) -> str:
    """A business licence number in the one form uniqueness is checked on (`normal_form`, upper case, any
    whitespace as one space). `LIC-7`, `lic-7`, `ＬＩＣ-7` and `LIC‑7` (a non-breaking hyphen) were four
    registrations of one licence. NFKC again after upper case: upper-casing `ΐ` (U+0390) or `ß` before
    an accent gives letters NFKC composes, so the form was not stable (normalising it again changed
    it; every BMP code point is tested)."""
    upper = unicodedata.normalize("NFKC", normal_form(value).upper())
    return required_text(" ".join(upper.split()), "licence_no", 64)


# Scripts whose letters look like each other's (`a` and Cyrillic `а`, `o` and Greek `ο`).
_LOOK_ALIKE_SCRIPTS = frozenset({"LATIN", "GREEK", "CYRILLIC"})
_WORD = re.compile(r"[^\W\d_]+")


def unmixed(text: str, field: str) -> str:
    """`text`, refused (422 `mixed_script`) if a word in it mixes Latin, Greek and Cyrillic letters: the
    trick of a look-alike (`Sоlden` with a Cyrillic `о` is not the brand `Solden`). For names that
    stand for someone (merchants, brands) and chosen ids; not product titles, where `25μg` is a word.
    Words are read through NFKC: a full-width or mathematical letter's name gives no script (`Ｓоｌｄｅｎ`
    passed), what it stands for does. `text` is returned as it was."""
    for word in _WORD.findall(unicodedata.normalize("NFKC", text)):
        scripts = {unicodedata.name(c, "").partition(" ")[0] for c in word} & _LOOK_ALIKE_SCRIPTS
        if len(scripts) > 1:
            raise ValidationError(
                f"{field} {text!r}: the word {word!r} mixes {' and '.join(sorted(scripts)).lower()} letters",
                code="mixed_script",
            )
    return text


def lookup_name(value: str | None, field: str = "id") -> str:
    """A chosen id or name (`chosen_name`) in the form it is stored in, for every lookup by it:
    `normal_form`, a ZWNJ that parts nothing dropped. `ＳＡＶＥ１０` typed at checkout (a Chinese input
    method's full width) was a 404 for `SAVE10`, as `ｐｒｏｍｏ` was for experiment `promo`. A name no
    rule would store is not found; only a value that is not text (an integer column of an imported
    Parquet file, a CSV cell left empty, a library caller's number) is refused, 422 `invalid_id`: it
    was a TypeError, a 500."""
    if value is not None and not isinstance(value, str):
        raise ValidationError(
            f"{field} {value!r} is not text but {type(value).__name__}: ids and names are strings",
            code="invalid_id",
        )
    return _drop_silent_zwnj(normal_form(value))


def stored_form(value: str, exists: Callable[[str], bool]) -> str:
    """The id `value` names, for every lookup by a chosen id: `value` itself if a row has it, else its
    normal form (`lookup_name`). New ids are stored normalised, but a row stored before that rule (`p 1`
    with two spaces, `p–1` with an en dash, full-width `ｐ１`) keeps its id: read only in normal form
    it was a 404 by every spelling, and a shopper key bound to it a 403 at checkout. An id already in
    normal form is that form: nothing to look up."""
    normal = lookup_name(value)
    return value if normal != value and exists(value) else normal


def stored_key(session: Session, model: type, value: str) -> str:
    """`stored_form` for a row of `model` by its primary key (a second `get` of it hits the identity map)."""
    return stored_form(value, lambda key: session.get(model, key) is not None)


def stored_keys(session: Session, model: type, values: Iterable[str]) -> dict[str, str]:
    """`stored_key` of each distinct value, the look-alikes (values not in normal form) read in one query:
    read one `get` each, a 1,000-event batch of distinct look-alike ids made 1,000 database reads."""
    values = set(values)
    unlike = {value for value in values if lookup_name(value) != value}
    (key,) = model.__mapper__.primary_key
    stored = set(session.scalars(select(key).where(key.in_(unlike)))) if unlike else set()
    return {value: stored_form(value, stored.__contains__) for value in values}


def chosen_name(value: str | None, field: str) -> str:
    """A unique id or name a client chooses, which others then type or pick from a list (coupon ids,
    experiment names), as stored and compared: `lookup_name`, visible (`visible_text`), `unmixed`.
    `c-10off`, `ｃ-10off` (full width), `c‐10off` (U+2010), `c-10off ` and `c-1Оoff` (a Cyrillic О)
    were five coupons, alike on screen."""
    return unmixed(visible_text(lookup_name(value), field), field)


def _look_alike(name: str, other: str | None, field: str) -> ValidationError:
    """The refusal, naming `other`, or (None) a stored value the sender may not see, without its name."""
    like = f"the existing {other!r}" if other is not None else f"another merchant's own {field}"
    return ValidationError(
        f"{field} {name!r} looks like {like} (Unicode confusables, UTS #39): "
        "choose a name that reads differently",
        code="confusable_name",
    )


def not_confusable(name: str, existing: Iterable[str], field: str) -> str:
    """`name`, refused (422 `confusable_name`) if it looks like (`skeleton`) one of `existing` that is
    another name. `unmixed` sees one word at a time, so a name spelt wholly in Cyrillic or Greek
    look-alikes (`ѕаѵе` for `save`) passed beside the Latin one; a genuine Chinese, Cyrillic or Greek
    name looks like no Latin one and passes."""
    key = skeleton(name)
    for other in existing:
        if other != name and skeleton(other) == key:
            raise _look_alike(name, other, field)
    return name


def unlike_stored(
    session: Session,
    name: str,
    column: InstrumentedAttribute[str],
    field: str,
    shown: ColumnElement[bool],
) -> str:
    """`name`, refused as `not_confusable` if it looks like a stored value of `column`: one indexed
    lookup of its skeleton in the column beside it (`commerce.sqltypes.skeleton_of`): the skeletons of
    every stored value on each write took 231 ms of CPU at 100,000 coupons, the lookup 0.4 ms at any
    size (bench/look_alikes.py). On PostgreSQL the
    check is serialized per column until the transaction ends (an advisory lock; SQLite's BEGIN
    IMMEDIATE already serializes writers): `PAY` and `РАУ` created at the same moment both passed.
    The refusal names the stored value only where `shown` (a condition on its row) holds, and every
    caller says who may see the row (`true()` where everyone reaching the path sees every row: staff's
    coupons, campaigns, experiments): a skeleton is looser than a name (`l`/`1`, `rn`/`m`), so naming
    another merchant's private location, draft product or keyword campaign, or to an applicant any
    merchant's name, told a prober its exact spelling."""
    if session.get_bind().dialect.name == "postgresql":
        key = zlib.crc32(f"look-alike:{column.class_.__tablename__}.{column.key}".encode())
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    stored = getattr(column.class_, column.key + SKELETON)
    found = session.execute(
        select(column, shown).where(stored == skeleton(name), column != name).limit(1)
    ).first()
    if found is not None:
        other, visible = found
        raise _look_alike(name, other if visible else None, field)
    return name


def id_form(value: str | None, field: str) -> str:
    """An id a client chooses (a merchant, product or campaign id) in the one form it is stored in: its
    normal form (`lookup_name`: `ｐ1` and `p1 ` are `p1`), refused (422 `invalid_id`) unless that matches
    `CHOSEN_ID_PATTERN` (`p1` + U+200B), then by `chosen_name`'s rules (`mixed_script`)."""
    normal = lookup_name(value, field)
    if not re.fullmatch(CHOSEN_ID_PATTERN, normal):
        raise ValidationError(
            f"{field} {value!r}: 1-64 characters starting with a letter, digit or _; no control,"
            " invisible or direction-changing character and no `/`",
            code="invalid_id",
        )
    return chosen_name(normal, field)


def chosen_id(
    session: Session,
    value: str,
    column: InstrumentedAttribute[str],
    field: str,
    shown: ColumnElement[bool],
) -> str:
    """The one rule for the id of a new row of `column` that a client chose: `id_form`, refused (422
    `confusable_name`) if it looks like a stored other id (`unlike_stored`, naming it where `shown`: a
    Cyrillic `р1` beside `p1`). Call it before looking for the id itself: on PostgreSQL `unlike_stored`
    waits for a look-alike created meanwhile, so the duplicate check after it sees that row committed."""
    return unlike_stored(session, id_form(value, field), column, field, shown)


def given_id(value: str, field: str) -> str:
    """An id a file names rows by (the bulk importer), refused (422 `invalid_id`) unless it is already
    in its stored form (`id_form`): the other files name the row by the same spelling, so a product
    stored as `p1` for a file's `ｐ1` left its stock, events and orders pointing at nothing."""
    stored = id_form(value, field)
    if stored != value:
        raise ValidationError(
            f"{field} {value!r} would be stored as {stored!r}: name it so in every file", code="invalid_id"
        )
    return stored


def csv_cell(value):
    """`value` as a spreadsheet shows it as text: a string that would start a formula gets a leading
    single quote (OWASP, CSV injection); other values unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def write_csv(out: IO[str], fieldnames: Sequence[str], rows: Iterable[Mapping]) -> int:
    """Every CSV export: header, then the rows with each cell through `csv_cell`; returns the rows."""
    writer = csv.writer(out)
    writer.writerow(fieldnames)
    n = 0
    for row in rows:
        writer.writerow([csv_cell(row[f]) for f in fieldnames])
        n += 1
    return n
