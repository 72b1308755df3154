"""deploy/kubernetes/: every manifest against the Kubernetes schemas, and against itself.

The schemas are kubernetes-validate's, bundled with it (no network), in strict mode (a
field the schema does not know is an error, so a typo cannot pass as an ignored field),
for two Kubernetes versions: 1.30, the oldest the kit claims, and 1.37, the newest the
package bundles. What a schema cannot see is checked here too: selectors and the labels
they select, ports and probes by name, $(VAR) references, ConfigMap keys, and each
container's arguments parsed by the real ``fleetwatch`` command line.
"""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path
from typing import Any

import click
import kubernetes_validate
import pytest
import yaml
from scripts import kube_configmap

from fleetwatch import config as configuration
from fleetwatch.cli import cli
from fleetwatch.inputs.kube_watch import KubeSource
from fleetwatch.watch import load_plan

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
VERSIONS = ("1.30", "1.37")
NAMESPACE = "fleetwatch"
# ServiceAccounts that rbac.yaml (with their roles) defines; checked once it is there.
RBAC_ACCOUNTS = {"fleetwatch-agent", "fleetwatch-events"}
WORKLOADS = {"DaemonSet", "Deployment", "StatefulSet", "Job"}


def manifests() -> list[tuple[str, int, dict[str, Any]]]:
    """(file name, index in file, object) for every YAML document in deploy/kubernetes."""
    found = []
    for path in sorted(KUBE.glob("*.yaml")) + sorted(KUBE.glob("*.yml")):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text(encoding="utf-8"))):
            if doc is not None:
                found.append((path.name, i, doc))
    return found


OBJECTS = manifests()


def kinds(*wanted: str) -> list[dict[str, Any]]:
    return [obj for _, _, obj in OBJECTS if obj["kind"] in wanted]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(workload)
    found: list[dict[str, Any]] = spec["containers"] + spec.get("initContainers", [])
    return found


def test_the_kit_has_what_it_promises() -> None:
    named = {(obj["kind"], obj["metadata"]["name"]) for _, _, obj in OBJECTS}
    assert {
        ("Namespace", "fleetwatch"),
        ("ConfigMap", "fleetwatch-config"),
        ("DaemonSet", "fleetwatch-agent"),
        ("Deployment", "fleetwatch-events"),
        ("Deployment", "fleetwatch-correlate"),
        ("Service", "fleetwatch-agent"),
    } <= named
    # kubectl apply -f DIR goes in file-name order: the namespace must come first
    first = sorted(KUBE.glob("*.y*ml"))[0]
    assert [d["kind"] for d in yaml.safe_load_all(first.read_text()) if d] == ["Namespace"]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("name", "index", "obj"), OBJECTS, ids=[f"{n}#{i}" for n, i, _ in OBJECTS])
def test_every_manifest_is_valid_against_the_schema(
    name: str, index: int, obj: dict[str, Any], version: str
) -> None:
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{name}#{index} {obj['kind']}: {path}: {exc.message} (Kubernetes {version})")
    except kubernetes_validate.SchemaNotFoundError as exc:  # a CRD, or a wrong apiVersion
        pytest.fail(f"{name}#{index}: {exc.message}")


def test_strict_validation_refuses_a_misspelt_field() -> None:
    """The check above can fail: a typo in a security setting is not silently ignored."""
    agent = copy.deepcopy(kinds("DaemonSet")[0])
    containers(agent)[0]["securityContext"]["readOnlyRootFileSystem"] = True  # sic
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFileSystem"):
        kubernetes_validate.validate(agent, VERSIONS[0], strict=True)


def test_everything_is_in_the_fleetwatch_namespace() -> None:
    for name, _, obj in OBJECTS:
        if obj["kind"] in {"Namespace", "ClusterRole", "ClusterRoleBinding"}:
            continue
        if name == "rbac.yaml" and obj["kind"] in {"Role", "RoleBinding"}:
            # Events on a Node go to "default", as the kubelet's and NPD's do: the one
            # grant outside fleetwatch's namespace, and only to create Events there
            assert obj["metadata"]["namespace"] == "default", obj["metadata"]["name"]
            continue
        assert obj["metadata"].get("namespace") == NAMESPACE, f"{name}: {obj['kind']}"


def test_selectors_select_their_own_pods_and_services_find_theirs() -> None:
    pods = []
    for workload in kinds(*WORKLOADS):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        wanted = workload["spec"]["selector"]["matchLabels"]
        assert wanted.items() <= labels.items(), workload["metadata"]["name"]
        pods.append((labels, containers(workload)))
    for service in kinds("Service"):
        selector = service["spec"]["selector"]
        chosen = [cs for labels, cs in pods if selector.items() <= labels.items()]
        assert chosen, f"Service {service['metadata']['name']} selects no pod"
        for cs in chosen:
            names = {p["name"] for c in cs for p in c.get("ports", [])}
            for port in service["spec"]["ports"]:
                assert port["targetPort"] in names, service["metadata"]["name"]


def test_probes_name_ports_the_container_has() -> None:
    for workload in kinds(*WORKLOADS):
        for c in containers(workload):
            ports = {p["name"] for p in c.get("ports", [])}
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                if probe in c:
                    assert c[probe]["httpGet"]["port"] in ports, (c["name"], probe)


def test_every_var_an_argument_names_is_set() -> None:
    """Kubernetes leaves an unknown $(VAR) in place: --node=$(NODE) would name a node so."""
    for workload in kinds(*WORKLOADS):
        for c in containers(workload):
            env = {e["name"] for e in c.get("env", [])}
            for arg in c.get("args", []) + c.get("command", []):
                for var in re.findall(r"\$\((\w+)\)", arg):
                    assert var in env, f"{c['name']}: {arg} names ${var}, not in env"


def test_service_accounts_exist() -> None:
    defined = {a["metadata"]["name"] for a in kinds("ServiceAccount")}
    rbac_here = (KUBE / "rbac.yaml").exists()
    for workload in kinds(*WORKLOADS):
        account = pod_spec(workload)["serviceAccountName"]
        if account in RBAC_ACCOUNTS and not rbac_here:
            continue  # rbac.yaml defines it, with its role; until it is here, not checked
        assert account in defined, f"{workload['metadata']['name']}: {account}"


def test_secrets_referenced_are_the_ones_the_readme_says_to_create() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for workload in kinds(*WORKLOADS):
        for c in containers(workload):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref is not None:
                    command = f"create secret generic {ref['name']} --from-literal={ref['key']}="
                    assert command in readme, f"README.md does not say: kubectl ... {command}"


def test_no_container_is_privileged_and_each_drops_every_capability() -> None:
    for workload in kinds(*WORKLOADS):
        assert not pod_spec(workload).get("hostNetwork") and not pod_spec(workload).get("hostPID")
        for c in containers(workload):
            context = c["securityContext"]
            assert context.get("privileged", False) is False, c["name"]
            assert context["allowPrivilegeEscalation"] is False, c["name"]
            assert context["readOnlyRootFilesystem"] is True, c["name"]
            assert context["capabilities"] == {"drop": ["ALL"]}, c["name"]
            assert "limits" in c["resources"] and "requests" in c["resources"], c["name"]


def configmap_data() -> dict[str, str]:
    (configmap,) = [c for c in kinds("ConfigMap") if c["metadata"]["name"] == "fleetwatch-config"]
    data: dict[str, str] = configmap["data"]
    return data


def test_the_configmap_is_the_example_rendered_again() -> None:
    """examples/watch.toml and the ConfigMap never drift: the file is what the script makes."""
    example = (ROOT / "examples" / "watch.toml").read_text(encoding="utf-8")
    assert (KUBE / "configmap.yaml").read_text(encoding="utf-8") == kube_configmap.render(
        example
    ), "deploy/kubernetes/configmap.yaml is stale: run .venv/bin/python scripts/kube_configmap.py"
    data = configmap_data()
    for role in kube_configmap.ROLES:
        assert data[role.key] == kube_configmap.role_text(role, example)


def test_each_config_holds_the_examples_values_but_the_ones_its_role_sets() -> None:
    example = tomllib.loads((ROOT / "examples" / "watch.toml").read_text(encoding="utf-8"))
    for role in kube_configmap.ROLES:
        got = tomllib.loads(configmap_data()[role.key])
        for table in role.tables:
            mine, theirs = got, example
            for part in table.split("."):
                mine, theirs = mine[part], theirs[part]
            for key, value in mine.items():
                if isinstance(value, dict):
                    continue  # a sub-table, compared on its own
                expected = role.values.get((table, key), theirs[key])
                assert value == expected, f"{role.key} [{table}] {key}"


def role_config(tmp_path: Path, key: str) -> Path:
    path = tmp_path / key
    path.write_text(configmap_data()[key], encoding="utf-8")
    return path


def test_the_agent_config_watches_the_kernel_log_and_the_gpus(tmp_path: Path) -> None:
    plan = load_plan(role_config(tmp_path, "agent.toml"), {})
    assert sorted(s.name for s in plan.sources({})) == ["kmsg", "nvml"]
    assert plan.webhook is None and not plan.settings.act


def test_the_events_config_watches_events_in_cluster(tmp_path: Path) -> None:
    plan = load_plan(role_config(tmp_path, "events.toml"), {})
    (source,) = plan.sources({})
    assert isinstance(source, KubeSource) and source.settings.in_cluster


def test_the_correlate_config_loads(tmp_path: Path) -> None:
    assert configuration.load(role_config(tmp_path, "correlate.toml")) == configuration.load(None)


def test_every_container_runs_a_real_command_with_real_flags(tmp_path: Path) -> None:
    """Each container's args parse with fleetwatch's own command line, and a --config
    names a key the pod mounts from the ConfigMap."""
    data = configmap_data()
    for workload in kinds(*WORKLOADS):
        spec = pod_spec(workload)
        for c in spec["containers"]:
            args = [re.sub(r"\$\((\w+)\)", "placeholder", a) for a in c["args"]]
            command = cli.commands[args[0]]
            assert isinstance(command, click.Command)
            try:
                params = command.make_context(args[0], args[1:]).params
            except click.UsageError as exc:
                pytest.fail(f"{workload['metadata']['name']}: {exc.format_message()}")
            if params.get("config_path"):
                assert config_mounted(spec, c, params["config_path"]) in data, c["args"]


def config_mounted(spec: dict[str, Any], container: dict[str, Any], path: str) -> str:
    """The ConfigMap key a path in the container is, or '' when none is mounted there."""
    folder, _, file = path.rpartition("/")
    volumes = {v["name"]: v for v in spec["volumes"]}
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if mount["mountPath"] == folder and "configMap" in volume:
            items = {i["path"]: str(i["key"]) for i in volume["configMap"].get("items", [])}
            return items.get(file, "")
    return ""
