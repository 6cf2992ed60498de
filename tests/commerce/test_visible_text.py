"""Names refuse characters that hide or disguise text, but keep the joiners real scripts and emoji use:
the round-4 rule refused ZWNJ / ZWJ everywhere, so a Persian shop name, a Devanagari conjunct or a
family emoji was a 422 `invisible_character`. Session 7 then kept a ZWNJ between any two letters of
non-Latin scripts, where most show nothing (after an Arabic alef, dal, reh or waw, which never join
on; between Chinese characters): it is kept only where it parts two letters that would join, or
beside a virama. Between two cursive letters where it parts nothing (Persian writers put one before
every `ها`), it is dropped rather than refused, so the two spellings are one name."""

from __future__ import annotations

import pytest

from commerce.errors import ValidationError
from commerce.services._util import required_text, unmixed, visible_text

ALLOWED = {
    "persian ZWNJ": "می\u200cخواهم",
    "persian plural (beh, ZWNJ, heh)": "کتاب\u200cها",
    "ZWNJ after a vowel mark on a joining letter": "بَ\u200cب",
    "devanagari ZWNJ after virama (no conjunct)": "क्\u200cष",
    "bengali ZWNJ before virama (ra, ya-phala)": "র\u200c্য",
    "syriac ZWNJ after beth": "ܒ\u200cܒ",
    "devanagari ZWJ after virama": "क्\u200dष",
    "malayalam ZWJ (chillu)": "ന്\u200dമ",
    "family emoji": "\U0001f468\u200d\U0001f469\u200d\U0001f467 toys",
    "rainbow flag (FE0F then ZWJ)": "\U0001f3f3\ufe0f\u200d\U0001f308 pride",
    "skin tone then ZWJ": "\U0001f469\U0001f3fd\u200d\U0001f4bb shop",
    "England flag (tag sequence)": "\U0001f3f4"
    + "".join(chr(0xE0000 + ord(c)) for c in "gbeng")
    + "\U000e007f fans",
}

DROPPED = {
    "ZWNJ after alef (joins nothing after it)": ("ا\u200cب", "اب"),
    "ZWNJ between alef and dal": ("ا\u200cد", "اد"),
    "ZWNJ after reh (persian plural)": ("دیوار\u200cها", "دیوارها"),
    "ZWNJ after waw": ("و\u200cب", "وب"),
    "ZWNJ after a vowel mark on dal": ("دَ\u200cب", "دَب"),
    "ZWNJ before hamza": ("ب\u200cء", "بء"),
    "ZWNJ after syriac alaph": ("ܐ\u200cܒ", "ܐܒ"),
    "one silent, one parting": ("کار\u200cها می\u200cخواهم", "کارها می\u200cخواهم"),
}

REFUSED = {
    "zero-width space": "home\u200bpage",
    "ZWNJ between Latin letters": "home\u200cpage",
    "ZWJ between Latin letters": "home\u200dpage",
    "ZWJ between Cyrillic letters": "мир\u200dмир",
    "ZWNJ at the end": "می\u200c",
    "ZWNJ between Chinese characters": "中\u200c文",
    "ZWNJ between Thai letters": "ก\u200cข",
    "ZWNJ between Devanagari consonants (no virama)": "क\u200cष",
    "ZWNJ after a virama, before a Latin letter": "क्\u200ca",
    "ZWJ at the start": "\u200d\U0001f469",
    "two joiners": "می\u200c\u200cخواهم",
    "ZWJ between emoji and a letter": "\U0001f469\u200da",
    "right-to-left override": "\u202eemoc",
    "left-to-right mark": "a\u200eb",
    "isolate": "Spring\u2066 sale",
    "BOM": "\ufeffname",
    "word joiner": "na\u2060me",
    "soft hyphen": "na\u00adme",
    "tag letters outside a flag": "name\U000e0061",
    "Hangul filler": "name\u3164",
    "line separator": "a\u2028b",
}


@pytest.mark.parametrize("text", ALLOWED.values(), ids=ALLOWED.keys())
def test_joiners_of_scripts_and_emoji_are_kept(text):
    assert visible_text(text, "name") == text
    assert required_text(f" {text} ", "name", 200) == text


@pytest.mark.parametrize("text", REFUSED.values(), ids=REFUSED.keys())
def test_characters_that_hide_text_are_refused(text):
    with pytest.raises(ValidationError) as refused:
        visible_text(text, "name")
    assert refused.value.code == "invisible_character"


@pytest.mark.parametrize(("text", "stored"), DROPPED.values(), ids=DROPPED.keys())
def test_a_zwnj_that_parts_nothing_in_a_cursive_word_is_dropped(text, stored):
    assert visible_text(text, "name") == stored
    assert required_text(f" {text} ", "name", 200) == stored


@pytest.mark.parametrize(
    "text",
    [
        "\uff33\u043e\uff4c\uff44\uff45\uff4e",  # Ｓоｌｄｅｎ: full-width Latin around a Cyrillic о
        "\U0001d412\u043e\U0001d425\U0001d41d\U0001d41e\U0001d427",  # mathematical bold, a Cyrillic о
    ],
)
def test_a_word_mixing_scripts_through_compatibility_letters_is_refused(text):
    """A full-width or mathematical letter's name starts with FULLWIDTH or MATHEMATICAL, not its script:
    read through NFKC (what it stands for), the word mixes Latin and Cyrillic like `Sоlden`."""
    with pytest.raises(ValidationError) as err:
        unmixed(text, "brand")
    assert err.value.code == "mixed_script"
    assert unmixed("\uff33olden", "brand") == "\uff33olden"  # one script: unchanged
