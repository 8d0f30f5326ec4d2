"""The node's TOML config: the documented example loads, mistakes are refused clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

from locker_node.config import (
    ConfigError,
    GpioBoardConfig,
    NodeConfig,
    SerialBoardConfig,
    SimulatedBoardConfig,
    load_config,
)

DESIGN_EXAMPLE = """
bank_id = "NYC-0042"
central_url = "https://central.example.net"   # absent: the node runs on its own
data_dir = "/var/lib/locker-node"              # SQLite store, keys

[kiosk]
host = "127.0.0.1"
port = 8080

[[boards]]
name = "main"
protocol = "kerong-cu16"      # kerong-cu16 | kerong-cu48 | xor | gpio | simulated
port = "/dev/ttyUSB0"         # or any pyserial URL, e.g. socket://10.0.0.5:5000
baudrate = 19200
address = 0                   # board id on the bus
lock_closed_bit = 1           # what a lock bit of 1 means

[[compartments]]
label = "A01"
size = "S"
board = "main"
lock = 1                      # 1-based, as printed on the board
"""

MINIMAL = """
bank_id = "B1"
data_dir = "var/node"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str) -> object:
    return load_config(write(tmp_path, text))


def test_the_documented_example_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, DESIGN_EXAMPLE))

    assert config.bank_id == "NYC-0042"
    assert config.central_url == "https://central.example.net"
    assert config.data_dir == Path("/var/lib/locker-node")
    assert (config.kiosk.host, config.kiosk.port) == ("127.0.0.1", 8080)
    (board,) = config.boards
    assert isinstance(board, SerialBoardConfig)
    assert (board.protocol, board.port, board.line_baudrate, board.bus_address) == (
        "kerong-cu16",
        "/dev/ttyUSB0",
        19200,
        0,
    )
    assert (board.lock_closed_bit, board.lock_count) == (1, 16)
    assert [(c.label, c.size, c.board, c.lock) for c in config.compartments] == [
        ("A01", "S", "main", 1)
    ]


def test_defaults_per_protocol_and_relative_data_dir(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            MINIMAL
            + """
[[boards]]
name = "x"
protocol = "xor"
port = "socket://10.0.0.5:5000"

[[boards]]
name = "dev"
protocol = "simulated"
locks = 4
""",
        )
    )

    xor_board, simulated = config.boards
    assert isinstance(xor_board, SerialBoardConfig)
    assert (xor_board.line_baudrate, xor_board.bus_address, xor_board.lock_count) == (9600, 1, 24)
    assert isinstance(simulated, SimulatedBoardConfig)
    assert config.central_url is None
    assert config.data_dir == tmp_path / "var/node"
    assert config.kiosk.port == 8080


def test_a_gpio_board(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            MINIMAL
            + """
[[boards]]
name = "side"
protocol = "gpio"
relay_active_high = false
locks = [{ relay = 5, sensor = 17 }, { relay = "GPIO6", sensor = 27 }]

[[compartments]]
label = "S2"
size = "M"
board = "side"
lock = 2
""",
        )
    )

    (board,) = config.boards
    assert isinstance(board, GpioBoardConfig)
    assert board.lock_count == 2
    assert board.locks[1].relay == "GPIO6"
    assert board.pin_factory == "lgpio"


CU16 = """
[[boards]]
name = "main"
protocol = "kerong-cu16"
port = "/dev/ttyUSB0"
"""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            CU16 + '[[compartments]]\nlabel = "A01"\nsize = "S"\nboard = "mian"\nlock = 1\n',
            "compartment 'A01' refers to board 'mian', which is not configured (boards: main)",
        ),
        (
            CU16
            + '[[compartments]]\nlabel = "A01"\nsize = "S"\nboard = "main"\nlock = 1\n'
            + '[[compartments]]\nlabel = "A01"\nsize = "M"\nboard = "main"\nlock = 2\n',
            "compartment labels used twice: A01",
        ),
        (
            CU16 + '[[compartments]]\nlabel = "A17"\nsize = "S"\nboard = "main"\nlock = 17\n',
            "board 'main' (kerong-cu16) has locks 1..16, not 17",
        ),
        (
            CU16.replace('"/dev/ttyUSB0"', '"/dev/ttyUSB0"\nlocks = 12')
            + '[[compartments]]\nlabel = "A13"\nsize = "S"\nboard = "main"\nlock = 13\n',
            "has locks 1..12, not 13",
        ),
        (
            CU16
            + '[[compartments]]\nlabel = "A1"\nsize = "S"\nboard = "main"\nlock = 1\n'
            + '[[compartments]]\nlabel = "B1"\nsize = "S"\nboard = "main"\nlock = 1\n',
            "compartments 'A1' and 'B1' share lock 1 on board 'main'",
        ),
        (CU16.replace("port =", "lock_closed_bt = 0\nport ="), "lock_closed_bt"),
        (CU16 + "\nlocks = 17\n", "kerong-cu16 boards have at most 16 locks"),
        (CU16 + "\naddress = 10\n", "kerong-cu16 addresses are 0..9, not 10"),
        (CU16.replace("kerong-cu16", "kerong-cu99"), "kerong-cu99"),
        (CU16 + CU16, "board names used twice: main"),
        (
            CU16 + CU16.replace('"main"', '"second"') + "baudrate = 9600\naddress = 1\n",
            "boards on /dev/ttyUSB0 disagree on the baud rate",
        ),
        (
            CU16 + CU16.replace('"main"', '"second"'),
            "kerong-cu16 boards on /dev/ttyUSB0 share address 0",
        ),
        ('central_url = "ftp://x"\n' + CU16, "central_url must be an http(s) URL"),
        ('centrl_url = "https://x"\n' + CU16, "centrl_url"),
        (
            "[[boards]]\nname = 'g'\nprotocol = 'gpio'\n"
            "locks = [{ relay = 5, sensor = 17 }, { relay = 17, sensor = 27 }]\n",
            "pins used twice: 17",
        ),
        ("", "boards"),
    ],
)
def test_mistakes_are_refused_with_a_clear_message(
    tmp_path: Path, extra: str, message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, MINIMAL + extra)

    assert message in str(raised.value)
    assert str(tmp_path / "node.toml") in str(raised.value)


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(tmp_path, "bank_id = ")
    with pytest.raises(ConfigError, match="cannot read the node config"):
        load_config(tmp_path / "absent.toml")


def test_ca_bundle_is_taken_relative_to_the_file_and_checked_when_it_loads(tmp_path: Path) -> None:
    ca = trustme.CA()
    (tmp_path / "certs").mkdir()
    ca.cert_pem.write_to_path(str(tmp_path / "certs" / "central-ca.pem"))
    (tmp_path / "key.pem").write_bytes(ca.issue_cert("central.example.net").private_key_pem.bytes())
    (tmp_path / "broken.pem").write_text(
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    )
    https = 'central_url = "https://central.example.net"\n'

    config = load(tmp_path, https + 'ca_bundle = "certs/central-ca.pem"\n' + MINIMAL + CU16)
    assert isinstance(config, NodeConfig)
    assert config.ca_bundle == tmp_path / "certs" / "central-ca.pem"
    unset = load(tmp_path, https + MINIMAL + CU16)
    assert isinstance(unset, NodeConfig) and unset.ca_bundle is None

    for text, message in (
        (
            https + 'ca_bundle = "missing.pem"\n',
            f"ca_bundle: {tmp_path / 'missing.pem'}: cannot read it: No such file or directory",
        ),
        (https + 'ca_bundle = "certs"\n', "certs: cannot read it: Is a directory"),
        (https + 'ca_bundle = "key.pem"\n', "key.pem: holds no PEM certificate"),
        (https + 'ca_bundle = "broken.pem"\n', "broken.pem: not a usable PEM CA bundle"),
        (
            https.replace("https:", "http:") + 'ca_bundle = "certs/central-ca.pem"\n',
            "ca_bundle is set but central_url is not an https:// URL",
        ),
        (
            'ca_bundle = "certs/central-ca.pem"\n',
            "ca_bundle is set but central_url is not an https:// URL",
        ),
    ):
        with pytest.raises(ConfigError) as raised:
            load(tmp_path, text + MINIMAL + CU16)
        assert message in str(raised.value)
