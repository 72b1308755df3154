"""The configuration file: defaults, overrides, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetwatch.config import ConfigError, field_docs, load
from fleetwatch.detectors import REGISTRY


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleetwatch.toml"
    path.write_text(text)
    return path


def test_defaults_without_a_file() -> None:
    configs = load(None)
    assert set(configs) == set(REGISTRY)
    assert configs["xid_correlation"].gap_s == 180.0


def test_a_file_overrides_and_turns_detectors_off(tmp_path: Path) -> None:
    configs = load(
        write(tmp_path, "[detectors.xid_correlation]\ngap_s = 60\nrma_fatal_count = 3\n")
    )
    assert (configs["xid_correlation"].gap_s, configs["xid_correlation"].rma_fatal_count) == (60, 3)
    assert "xid_correlation" not in load(
        write(tmp_path, "[detectors.xid_correlation]\nenabled = false\n")
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[detectors.nope]\n", "unknown detector [detectors.nope]"),
        (
            "[detectors.xid_correlation]\ngapp_s = 1\n",
            "unknown setting detectors.xid_correlation.gapp_s",
        ),
        ("[detectors.xid_correlation]\ngap_s = 'soon'\n", "gap_s must be a number, got 'soon'"),
        ("[detectors.xid_correlation]\ngap_s = -5\n", "gap_s must be positive, got -5"),
        ("[detectors.xid_correlation]\nrma_fatal_count = 2.5\n", "must be a whole number"),
        ("[detectors.xid_correlation]\nenabled = 'yes'\n", "enabled must be true or false"),
        ("[sinks]\n", "unknown section [sinks]"),
        ("this is = = not toml", "not valid TOML"),
    ],
)
def test_bad_configuration_is_one_line_naming_it(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, text))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_every_setting_is_documented() -> None:
    for spec in REGISTRY.values():
        import dataclasses

        names = {f.name for f in dataclasses.fields(spec.config)}
        assert names and set(field_docs(spec.config)) == names, spec.name
