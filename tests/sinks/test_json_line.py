"""Every JSON line escapes what is not printable: a bidi override in a node name is
``\\u202e`` in the file, and the name itself once read back."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from fleetwatch.cli import cli
from fleetwatch.findings import Action, Finding, Severity
from fleetwatch.incidents import link
from fleetwatch.sinks import write_jsonl
from fleetwatch.sinks.incidents import write_incidents
from fleetwatch.sinks.json_line import json_line
from fleetwatch.sinks.transition_log import TransitionLog
from fleetwatch.store import Store

# right-to-left override, its pop, first-strong isolate, left-to-right mark, Arabic
# letter mark, a C1 control (NEL), the line and paragraph separators, DEL, a lone
# surrogate (an undecodable byte of a folder name), a tag character past U+FFFF
HOSTILE = "gpu-\u202eevil\u202c\u2068x\u200e\u061c\x85\u2028\u2029\x7f\udcff\U000e0041"
XID79 = (
    "[ 1843.308145] NVRM: Xid (PCI:0000:3b:00): 79, pid=2761, name=python, "
    "GPU has fallen off the bus.\n"
)


@given(st.text())
def test_json_line_is_one_printable_line_and_reads_back_the_same(text: str) -> None:
    line = json_line({"node": text, text: [text]})
    assert line.endswith("\n") and line[:-1].isprintable()
    assert json.loads(line) == {"node": text, text: [text]}


def test_printable_text_is_kept_as_it_is() -> None:
    assert json_line({"node": "gpu-nœud-17 節点"}) == '{"node": "gpu-nœud-17 節点"}\n'


def test_findings_incidents_and_the_watch_log_escape_a_bidi_override(tmp_path: Path) -> None:
    finding = Finding(
        id="xid_correlation-1",
        detector="xid_correlation",
        severity=Severity.CRITICAL,
        action=Action.REBOOT_NODE,
        summary=f"Xid 79 on {HOSTILE}",
        first_ts=1717496983.0,
        last_ts=1717496983.0,
        clock="wall",
        node=HOSTILE,
    )
    out = StringIO()
    write_jsonl([finding], out)
    assert json.loads(out.getvalue())["node"] == HOSTILE
    assert "\u202e" not in out.getvalue() and "\\u202e" in out.getvalue()
    incidents = StringIO()
    write_incidents(link([finding]), "incidents", incidents)
    assert json.loads(incidents.getvalue())["nodes"] == [HOSTILE]
    assert incidents.getvalue()[:-1].isprintable()
    log = TransitionLog(tmp_path / "t.jsonl", None)
    log.write([{**finding.to_json(), "transition": "new"}])
    log.close()
    written = (tmp_path / "t.jsonl").read_text()
    assert written[:-1].isprintable() and json.loads(written)["node"] == HOSTILE


def test_replay_parse_and_silence_list_escape_them(tmp_path: Path) -> None:
    name = "gpu-\u202eevil\u2066x\u2069\x9b"  # no surrogate: a folder name on this machine
    (tmp_path / "in" / name).mkdir(parents=True)
    (tmp_path / "in" / name / "dmesg").write_text(XID79)
    runner = CliRunner()
    for args in (["replay", "--output", "jsonl"], ["replay", "--output", "incidents"], ["parse"]):
        done = runner.invoke(cli, [*args, str(tmp_path / "in")])
        assert done.exit_code == 0, done.output
        for needle in ("\\u202e", "\\u2066", "\\u2069", "\\u009b"):
            assert needle in done.stdout, (args, needle)
        assert all(line.isprintable() for line in done.stdout.splitlines())
        assert any(
            name in json.dumps(json.loads(line), ensure_ascii=False)
            for line in done.stdout.splitlines()
        )
    Store(tmp_path / "w.db").close()
    store = str(tmp_path / "w.db")
    added = runner.invoke(
        cli, ["silence", "--store", store, "--node", name, "--for", "1h", "--reason", "r"]
    )
    assert added.exit_code == 0, added.output
    listed = runner.invoke(cli, ["silence", "--store", store, "--list", "--output", "jsonl"])
    assert listed.stdout.count("\n") == 1 and listed.stdout[:-1].isprintable()
    assert json.loads(listed.stdout)["node"] == name
