"""Names refuse characters that hide or disguise text, but keep the joiners real scripts and emoji use:
the round-4 rule refused ZWNJ / ZWJ everywhere, so a Persian shop name, a Devanagari conjunct or a
family emoji was a 422 `invisible_character`."""

from __future__ import annotations

import pytest

from commerce.errors import ValidationError
from commerce.services._util import required_text, visible_text

ALLOWED = {
    "persian ZWNJ": "می\u200cخواهم",
    "devanagari ZWJ after virama": "क्\u200dष",
    "malayalam ZWJ (chillu)": "ന്\u200dമ",
    "family emoji": "\U0001f468\u200d\U0001f469\u200d\U0001f467 toys",
    "rainbow flag (FE0F then ZWJ)": "\U0001f3f3\ufe0f\u200d\U0001f308 pride",
    "skin tone then ZWJ": "\U0001f469\U0001f3fd\u200d\U0001f4bb shop",
    "England flag (tag sequence)": "\U0001f3f4"
    + "".join(chr(0xE0000 + ord(c)) for c in "gbeng")
    + "\U000e007f fans",
}

REFUSED = {
    "zero-width space": "home\u200bpage",
    "ZWNJ between Latin letters": "home\u200cpage",
    "ZWJ between Latin letters": "home\u200dpage",
    "ZWJ between Cyrillic letters": "мир\u200dмир",
    "ZWNJ at the end": "می\u200c",
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
