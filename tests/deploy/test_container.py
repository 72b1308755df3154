"""deploy/container/Containerfile, read as a builder reads it (no builder runs here).

No image is built in the tests: building needs the python:3.11-slim base image from a
container registry, which this project's machines cannot reach. So the file is parsed
into its instructions (continuation lines joined, comments dropped) and held to what
the kit relies on: two stages on the promised base, the second copying from the first,
a non-root user whose UID the Kubernetes manifests name, ``fleetwatch`` as the
entrypoint, and extras that pyproject.toml defines.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "deploy" / "container" / "Containerfile"
BASE = "python:3.11-slim"
INSTRUCTIONS = {
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
    "LABEL", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
}  # fmt: skip


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, its arguments) in order, as a Dockerfile parser reads them."""
    found: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if pending and line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction is dropped
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        word, _, rest = (pending + line).strip().partition(" ")
        found.append((word.upper(), " ".join(rest.split())))
        pending = ""
    assert not pending, "the file ends inside a continued instruction"
    return found


def stages() -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for instruction in instructions(CONTAINERFILE.read_text(encoding="utf-8")):
        if instruction[0] == "FROM":
            out.append([])
        assert out, "an instruction before the first FROM"
        out[-1].append(instruction)
    return out


def test_every_line_is_a_dockerfile_instruction() -> None:
    unknown = {word for word, _ in instructions(CONTAINERFILE.read_text())} - INSTRUCTIONS
    assert not unknown


def test_the_parser_joins_continuations_and_drops_comments() -> None:
    text = "# c\nFROM a AS b\nRUN x \\\n  # inside\n    && y\nUSER 1:1\n"
    assert instructions(text) == [("FROM", "a AS b"), ("RUN", "x && y"), ("USER", "1:1")]


def test_two_stages_on_the_promised_base_the_second_taking_from_the_first() -> None:
    build, final = stages()
    assert build[0] == ("FROM", f"{BASE} AS build")
    assert final[0] == ("FROM", BASE)
    copies = [args for word, args in final if word == "COPY"]
    assert any(args.startswith("--from=build ") for args in copies)


def test_it_runs_as_the_non_root_user_the_manifests_name() -> None:
    final = stages()[-1]
    users = [args for word, args in final if word == "USER"]
    assert users, "no USER: the image would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000
    named = set()
    for path in (ROOT / "deploy" / "kubernetes").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            named |= set(run_as_users(doc))
    assert int(uid) in named  # the pods that run as the image's user say so


def run_as_users(node: object) -> list[int]:
    """Every runAsUser in a manifest, wherever it is nested."""
    if isinstance(node, dict):
        found = [node["runAsUser"]] if "runAsUser" in node else []
        return found + [u for value in node.values() for u in run_as_users(value)]
    if isinstance(node, list):
        return [u for item in node for u in run_as_users(item)]
    return []


def test_the_entrypoint_is_fleetwatch() -> None:
    (entrypoint,) = [args for word, args in stages()[-1] if word == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["fleetwatch"]  # exec form: signals reach fleetwatch


def test_the_extras_it_installs_are_defined() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = set(project.get("optional-dependencies", {})) - {"dev"}
    installs = " ".join(args for word, args in stages()[0] if word == "RUN")
    (named,) = set(re.findall(r"\.\[([\w,-]+)\]", installs))
    # Until pyproject.toml splits the dependencies into extras, pip installs them all
    # from the base (it warns about an extra it does not know); from then on, each
    # extra named here must be one of them.
    if extras:
        assert set(named.split(",")) <= extras


def test_the_build_context_leaves_out_what_builds_leave() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv"} <= set(ignored)
