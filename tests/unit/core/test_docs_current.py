"""Generated documentation stays true: the README's configuration table."""

from __future__ import annotations

from pathlib import Path

from postline.cli.config_cmd import with_reference

ROOT = Path(__file__).resolve().parents[3]


def test_readme_configuration_reference_is_current() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "<!-- config-reference:start -->" in text
    assert with_reference(text) == text, "run `make docs` and commit README.md"
