"""Write ``deploy/kubernetes/configmap.yaml`` from ``examples/watch.toml``.

The Kubernetes kit runs three kinds of process, each with its own ``--config``: the node
agent (this node's kernel log and GPUs), the events watcher (the cluster's Kubernetes
Events) and the correlators (detectors only). A table of the example *is* a source in
``watch`` (``[watch.kmsg]`` turns the kernel log on), so no one file can serve all
three: each gets the tables of the example that its role needs, copied as they are,
comments included, with at most a value or two changed (the events watcher's
``in_cluster = true``). ``tests/deploy/test_kubernetes.py`` renders again and compares,
so the ConfigMap and the example never drift apart: change the example, then run

    .venv/bin/python scripts/kube_configmap.py

(``--check``: exit 1 when the file is not what the example gives).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "watch.toml"
CONFIGMAP = ROOT / "deploy" / "kubernetes" / "configmap.yaml"
NAME = "fleetwatch-config"
NAMESPACE = "fleetwatch"


@dataclass(frozen=True)
class Role:
    """One process's config file: which tables of the example it keeps."""

    key: str
    """The ConfigMap key (the file name under /etc/fleetwatch)."""
    header: str
    """Comment lines that open the file, in place of the example's own."""
    tables: tuple[str, ...]
    """Table names kept (``watch.files`` for ``[[watch.files]]``); every
    ``[detectors.*]`` table is kept too: all three roles run the same detectors."""
    values: dict[tuple[str, str], bool | int | float | str] = field(default_factory=dict)
    """(table, key) -> the value this role sets in place of the example's."""


ROLES = (
    Role(
        "agent.toml",
        "# The node agent (DaemonSet fleetwatch-agent): this node's kernel log and GPUs.\n"
        "# The DaemonSet's flags add --store, --node and the metrics address.\n",
        ("watch", "watch.breaker", "watch.kmsg", "watch.nvml", "watch.metrics"),
    ),
    Role(
        "events.toml",
        "# The events watcher (Deployment fleetwatch-events): the cluster's Kubernetes\n"
        "# Events, through the pod's service account. The Deployment's flags add --store\n"
        "# and the metrics address.\n",
        ("watch", "watch.kubernetes", "watch.metrics"),
        {("watch.kubernetes", "in_cluster"): True},
    ),
    Role(
        "correlate.toml",
        "# The correlators (Deployment fleetwatch-correlate): they read only detector\n"
        "# thresholds, [detectors.NAME] tables (`fleetwatch detectors` lists them).\n",
        (),
    ),
)


def blocks(text: str) -> tuple[str, list[tuple[str, list[str]]]]:
    """The example's opening comments, then each table as (name, its lines)."""
    preamble: list[str] = []
    tables: list[tuple[str, list[str]]] = []
    for line in text.splitlines(keepends=True):
        if line.startswith("["):
            name = line.lstrip("[").split("]", 1)[0].strip()
            tables.append((name, [line]))
        elif tables:
            tables[-1][1].append(line)
        else:
            preamble.append(line)
    return "".join(preamble), tables


def toml_value(value: bool | int | float | str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    return repr(value)


def set_value(lines: list[str], table: str, key: str, value: bool | int | float | str) -> None:
    """Replace ``key``'s value in its table's lines, keeping the comment after it."""
    for i, line in enumerate(lines):
        name, sep, rest = line.partition("=")
        if sep and name.strip() == key:
            old, hash_, comment = rest.partition("#")
            new = f"{name}= {toml_value(value)}"
            if hash_:
                new = f"{new:<{len(name) + len(old) + 1}}#{comment}"
            lines[i] = new if new.endswith("\n") else new + "\n"
            return
    raise ValueError(f"examples/watch.toml: [{table}] has no {key} to set")


def role_text(role: Role, text: str) -> str:
    """The config file of ``role``, from the example's ``text``."""
    _, tables = blocks(text)
    out = [role.header]
    kept = {name for name, _ in tables}
    for table, key in role.values:
        if table not in role.tables or table not in kept:
            raise ValueError(f"examples/watch.toml: {role.key} sets {key} in [{table}], not kept")
    for name, lines in tables:
        if name not in role.tables and not name.startswith("detectors."):
            continue
        lines = list(lines)
        for (table, key), value in role.values.items():
            if table == name:
                set_value(lines, table, key, value)
        out.append("\n" + "".join(lines).strip("\n") + "\n")
    return "".join(out)


def render(text: str) -> str:
    """The whole ConfigMap manifest."""
    out = [
        "# Generated by scripts/kube_configmap.py from examples/watch.toml: edit the example,\n",
        "# then run it again (a test fails while the two differ).\n",
        "apiVersion: v1\n",
        "kind: ConfigMap\n",
        "metadata:\n",
        f"  name: {NAME}\n",
        f"  namespace: {NAMESPACE}\n",
        "  labels:\n",
        "    app.kubernetes.io/name: fleetwatch\n",
        "    app.kubernetes.io/part-of: fleetwatch\n",
        "data:\n",
    ]
    for role in ROLES:
        out.append(f"  {role.key}: |\n")
        for line in role_text(role, text).splitlines():
            out.append(f"    {line}\n" if line.strip() else "\n")
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    wanted = render(EXAMPLE.read_text(encoding="utf-8"))
    if args.check:
        current = CONFIGMAP.read_text(encoding="utf-8") if CONFIGMAP.exists() else ""
        if current != wanted:
            print(f"{CONFIGMAP.relative_to(ROOT)} is stale: run scripts/kube_configmap.py")
            return 1
        return 0
    CONFIGMAP.parent.mkdir(parents=True, exist_ok=True)
    CONFIGMAP.write_text(wanted, encoding="utf-8")
    print(f"wrote {CONFIGMAP.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
