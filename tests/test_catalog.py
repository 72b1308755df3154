"""Every shipped data file loads and matches its schema; the helpers that use them."""

from __future__ import annotations

import pytest

from fleetwatch.catalog import (
    aer_bits,
    clock_event_reasons,
    dcgm_metrics,
    months,
    smi_query_columns,
)
from fleetwatch.incidents import shipped_rules
from fleetwatch.pci import normalize_pci, pci_from_nccl_bus_id
from fleetwatch.sources.dcgm import is_blank


def test_every_catalog_file_loads() -> None:
    bits = aer_bits()
    assert bits.correctable[0] == "RxErr" and bits.uncorrectable[14] == "CmpltTO"
    assert bits.new_name["replay timer timeout"] == "Timeout"
    reasons = clock_event_reasons()
    assert sum(r.bit for r in reasons) == 0x1FF  # nine distinct bits
    assert dcgm_metrics()["DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"].scope == "volatile"
    assert smi_query_columns()["pcie.link.width.current"].link == "width"
    assert months()["mär"] == 3 and months()["déc"] == 12 and months()["окт"] == 10
    assert shipped_rules().rules[0].name == "hardware_on_node"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PCI:0000:CB:00", "0000:cb:00.0"),
        ("00000000:CB:00.0", "0000:cb:00.0"),
        ("0000:09:00.0", "0000:09:00.0"),
        ("10003:00:02.0", "10003:00:02.0"),
        ("3b:00.1", "0000:3b:00.1"),
        ("not a pci address", None),
        ("0000:3b:00.9", None),
    ],
)
def test_pci_addresses_have_one_spelling(text: str, expected: str | None) -> None:
    assert normalize_pci(text) == expected


@pytest.mark.parametrize(
    ("bus_id", "expected"),
    [
        ("7000", "0000:07:00.0"),
        ("1b000", "0000:1b:00.0"),
        ("60", "0000:00:06.0"),
        ("100cb001", "0100:cb:00.1"),
        ("zz", None),
    ],
)
def test_nccl_bus_ids(bus_id: str, expected: str | None) -> None:
    assert pci_from_nccl_bus_id(bus_id) == expected


def test_dcgm_blank_sentinels_are_no_value() -> None:
    assert is_blank(9223372036854775794.0) and is_blank(2147483632.0) and is_blank(2.0**47 + 2)
    assert not is_blank(0.0) and not is_blank(700.0) and not is_blank(2147483631.0)
