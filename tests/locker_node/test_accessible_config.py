"""`accessible = true` on a `[[compartments]]` table of the node config."""

from __future__ import annotations

from pathlib import Path

import pytest

from locker_node.config import ConfigError, load_config

BASE = """
bank_id = "NYC-0042"
data_dir = "data"

[[boards]]
name = "main"
protocol = "simulated"

[[compartments]]
label = "A01"
size = "S"
board = "main"
lock = 1

[[compartments]]
label = "A02"
size = "M"
board = "main"
lock = 2
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_doors_are_not_accessible_unless_the_file_says_so(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE))
    assert [c.accessible for c in config.compartments] == [False, False]


def test_a_door_marked_accessible_is(tmp_path: Path) -> None:
    text = BASE.replace("lock = 2\n", "lock = 2\naccessible = true\n")
    config = load_config(write(tmp_path, text))
    assert [(c.label, c.accessible) for c in config.compartments] == [
        ("A01", False),
        ("A02", True),
    ]


@pytest.mark.parametrize("value", ['"yes"', '"true"', "1"])
def test_anything_but_a_toml_boolean_is_refused(tmp_path: Path, value: str) -> None:
    text = BASE.replace("lock = 2\n", f"lock = 2\naccessible = {value}\n")
    with pytest.raises(ConfigError, match=r"compartments\.1\.accessible"):
        load_config(write(tmp_path, text))
