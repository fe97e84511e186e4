"""How the console shows a rule's alerts: category, icon and titles, as data in the rule set."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from rules.ruleset import (
    CATEGORIES,
    Presentation,
    RuleSetError,
    Titles,
    default_rules_text,
    load_ruleset,
    parse_ruleset,
)
from tests.utils.services import REPO

STATIC = REPO / "dashboards" / "static"


def test_every_default_rule_gives_its_presentation_in_both_languages() -> None:
    raw = yaml.safe_load(default_rules_text())["rules"]
    for rule_id, rule in raw.items():
        # Written out, not left to the defaults, and in the new spelling only.
        assert {"category", "icon", "titles"} <= set(rule), rule_id
        assert "title" not in rule, rule_id
        assert set(rule["titles"]) == {"sv", "en"}, rule_id
    rs = load_ruleset(default_rules_text())
    assert rs.presentation("not_back_in_bed") == Presentation(
        category="bed", icon="bed", titles=Titles(sv="Ej tillbaka i sängen", en="Not back in bed")
    )
    # The Swedish title is still what an alert stores.
    assert rs.rules["dose_not_taken"].title == "Missad dos"
    assert rs.presentation("no_such_rule") is None


def test_each_category_has_a_colour_and_each_icon_a_drawing_in_the_console() -> None:
    css = (STATIC / "console.css").read_text(encoding="utf-8")
    coloured = set(re.findall(r'\.alert\[data-category="(\w+)"\]', css))
    script = (STATIC / "console.js").read_text(encoding="utf-8")
    icons_block = script[
        script.index("const ICONS = {") : script.index("\n};", script.index("const ICONS"))
    ]
    drawn = set(re.findall(r"^  (\w+): \[", icons_block, flags=re.MULTILINE))
    assert coloured == set(CATEGORIES)
    assert drawn == set(CATEGORIES)


def test_an_older_file_with_only_title_still_loads(tmp_path: Path) -> None:
    own = tmp_path / "org.yaml"
    own.write_text(
        "rules:\n"
        "  fall: {title: Fallarm}\n"
        "  evening_wandering: {type: immediate, title: Lämnat rummet, priority: 2,"
        " kinds: [sensor.left_room]}\n",
        encoding="utf-8",
    )
    rs = load_ruleset(default_rules_text(), own)
    # A rename of a default rule is the Swedish name; the default's English and look stay.
    fall = rs.rules["fall"]
    assert (fall.title, fall.titles) == ("Fallarm", Titles(sv="Fallarm", en="Fall"))
    assert (fall.category, fall.icon) == ("fall", "fall")
    # A rule of its own with only a title shows it in both languages, with the neutral look.
    assert rs.presentation("evening_wandering") == Presentation(
        category="device", icon="device", titles=Titles(sv="Lämnat rummet", en="Lämnat rummet")
    )
    # A person's own settings keep the rule's presentation.
    devices = own.read_text(encoding="utf-8") + "devices:\n  sensor-1: {fall: {priority: 2}}\n"
    own.write_text(devices, encoding="utf-8")
    assert load_ruleset(default_rules_text(), own).rule_for("fall", "sensor-1").titles.sv == (
        "Fallarm"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "rules:\n  fall: {category: falls}",
            "key rules.fall.category: expected 'alarm', 'fall', 'bed'",
        ),
        ("rules:\n  fall: {icon: bell}", "key rules.fall.icon: expected 'alarm', 'fall'"),
        ("rules:\n  fall: {titles: {en: ''}}", "key rules.fall.titles.en: expected at least 1"),
        (
            "rules:\n  new_one: {type: immediate, priority: 2, kinds: [alarm.button],"
            " titles: {en: Call}}",
            "key rules.new_one.titles.sv: required, but missing",
        ),
        (
            "rules:\n  new_one: {type: immediate, priority: 2, kinds: [alarm.button]}",
            "key rules.new_one.title: required, but missing",
        ),
        (
            "rules:\n  fall: {title: Fallarm, titles: {sv: Fall, en: Fall}}",
            "key rules.fall.title: the older spelling of titles.sv; give one of them, not both",
        ),
    ],
)
def test_a_bad_presentation_names_the_file_and_the_key(text: str, expected: str) -> None:
    with pytest.raises(RuleSetError) as caught:
        parse_ruleset(default_rules_text(), text, source="org.yaml")
    problems = caught.value.problems
    assert any(p.startswith("org.yaml: ") and expected in p for p in problems), problems
