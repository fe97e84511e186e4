"""`wgw rules check` validates an organisation's rule set without starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main


def test_a_valid_override_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "vallby-rules.yaml"
    rules.write_text("rules:\n  not_back_in_bed:\n    within_min: 30\n")
    assert main(["rules", "check", str(rules)]) == 0
    assert "rule set is valid" in capsys.readouterr().out


def test_a_bad_override_names_file_key_and_expectation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "vallby-rules.yaml"
    rules.write_text("rules:\n  not_back_in_bed:\n    within_min: twenty\n")
    assert main(["rules", "check", str(rules)]) == 1
    err = capsys.readouterr().err
    assert str(rules) in err
    assert "rules.not_back_in_bed.within_min" in err
    assert "integer" in err


def test_serve_refuses_a_bad_rule_set_at_start_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "vallby-rules.yaml"
    rules.write_text("rules:\n  fall:\n    priority: 9\n")
    config = tmp_path / "wgw.toml"
    config.write_text(f'[rules]\nfile = "{rules}"\n')
    assert main(["serve", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert str(rules) in err and "rules.fall.priority" in err
