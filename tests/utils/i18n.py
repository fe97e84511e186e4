"""Reads the console's translation dictionaries out of its scripts, without running them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tests.utils.services import REPO

STATIC = REPO / "dashboards" / "static"
LANGS = ("sv", "en")

# A dictionary opens with `sv: {` or `en: {` alone on its line (i18n.js's
# MESSAGES, a page's own passed to addMessages) and closes at `},` indented alike.
_OPEN = re.compile(r"^(?P<indent>\s*)(?P<lang>sv|en): \{$")
_QUOTED = r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'"
_ENTRY = re.compile(rf"^\s*(?P<key>{_QUOTED}|[A-Za-z_]\w*):\s*(?P<value>{_QUOTED}),?\s*(//.*)?$")
_COMMENT = re.compile(r"^\s*(//.*)?$")


@dataclass(frozen=True)
class Dictionary:
    """One script's texts: language → key → text."""

    path: Path
    texts: dict[str, dict[str, str]]


def _unquote(literal: str) -> str:
    if literal[0] not in "\"'":
        return literal
    body = literal[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m[1], m[1]), body)


def read_dictionaries(path: Path) -> Dictionary:
    """The sv/en blocks of one script; a line inside one that is not `"key": "text",` fails."""
    texts: dict[str, dict[str, str]] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opened = _OPEN.match(lines[i])
        i += 1
        if opened is None:
            continue
        lang, close = opened["lang"], f"{opened['indent']}}},"
        block = texts.setdefault(lang, {})
        while lines[i].rstrip() not in {close, close.rstrip(",")}:
            entry = _ENTRY.match(lines[i])
            if entry is not None:
                key = _unquote(entry["key"])
                assert key not in block, f"{path.name}:{i + 1}: {key!r} given twice in {lang}"
                block[key] = _unquote(entry["value"])
            else:
                assert _COMMENT.match(lines[i]), (
                    f'{path.name}:{i + 1}: not a `"key": "text",` line: {lines[i]!r}'
                )
            i += 1
    return Dictionary(path, texts)


def all_dictionaries() -> list[Dictionary]:
    """The dictionaries of every script under dashboards/static that has any."""
    found = [read_dictionaries(p) for p in sorted(STATIC.glob("*.js"))]
    return [d for d in found if d.texts]


def swedish_only_texts() -> list[str]:
    """The Swedish texts no English text equals: what a page in English mode never shows."""
    sv: set[str] = set()
    en: set[str] = set()
    for dictionary in all_dictionaries():
        sv |= set(dictionary.texts.get("sv", {}).values())
        en |= set(dictionary.texts.get("en", {}).values())
    return sorted(sv - en)


def text_pattern(text: str) -> re.Pattern[str]:
    """A text as a whole-word pattern, with each {placeholder} matching anything."""
    parts = [re.escape(p) for p in re.split(r"\{\w+\}", text)]
    body = ".+?".join(parts)
    return re.compile(rf"(?<!\w){body}(?!\w)")
