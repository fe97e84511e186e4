"""Every text of the console exists in Swedish and in English."""

from __future__ import annotations

import re

from tests.utils.i18n import LANGS, STATIC, all_dictionaries, swedish_only_texts

# A key named in markup (data-i18n, data-i18n-title, ..., the shell's data-title),
# or in a script as the literal first argument of t() or has(), the key of
# setI18n(el, ...), or a message's key.
_MARKUP_KEY = re.compile(r'(?:data-i18n(?:-[a-z-]+)?|data-title)="([^"]+)"')
_SCRIPT_KEY = re.compile(
    r'(?<![.\w])(?:t|has)\(\s*"([\w.-]+)"'  # t("key"), has("key")
    r'|setI18n\([^,()]+,\s*"([\w.-]+)"'  # setI18n(el, "key")
    r'|\{ key: "([\w.-]+)"'  # a message object, { key: "key", params }
)


def test_each_script_gives_every_key_in_both_languages() -> None:
    dictionaries = all_dictionaries()
    # The reader found the dictionaries (a format it cannot read fails inside it).
    assert {d.path.name for d in dictionaries} >= {"i18n.js", "pages.js", "audit.js", "report.js"}
    assert len(next(d for d in dictionaries if d.path.name == "i18n.js").texts["sv"]) > 100
    for dictionary in dictionaries:
        sv, en = (set(dictionary.texts.get(lang, {})) for lang in LANGS)
        name = dictionary.path.name
        assert sorted(sv - en) == [], f"{name}: keys with no English text"
        assert sorted(en - sv) == [], f"{name}: keys with no Swedish text"
        for lang in LANGS:
            empty = [k for k, text in dictionary.texts[lang].items() if not text.strip()]
            assert empty == [], f"{name}: empty {lang} texts"


def test_every_key_the_pages_name_has_a_text() -> None:
    known: dict[str, set[str]] = {lang: set() for lang in LANGS}
    for dictionary in all_dictionaries():
        for lang in LANGS:
            known[lang] |= set(dictionary.texts.get(lang, {}))
    named: dict[str, set[str]] = {}
    for path in sorted(STATIC.glob("*.html")):
        for key in _MARKUP_KEY.findall(path.read_text(encoding="utf-8")):
            named.setdefault(key, set()).add(path.name)
    for path in sorted(STATIC.glob("*.js")):
        for groups in _SCRIPT_KEY.findall(path.read_text(encoding="utf-8")):
            named.setdefault(next(g for g in groups if g), set()).add(path.name)
    assert len(named) > 100  # the patterns still find the keys in use
    for lang in LANGS:
        missing = {key: sorted(where) for key, where in named.items() if key not in known[lang]}
        assert missing == {}, f"keys with no {lang} text"


def test_the_swedish_only_texts_are_what_the_browser_tests_look_for() -> None:
    texts = swedish_only_texts()
    # The issue's own examples, which stayed Swedish in English mode.
    assert {"Uppdaterad {time}", "Larmet är åtgärdat."} <= set(texts)
    assert "Organisation" not in texts  # the same word in both languages is no sign
