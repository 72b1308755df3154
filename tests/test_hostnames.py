"""Which node names may go into a command: host names, and nothing a shell or Slurm parses;
for Slurm, not ``ALL`` either."""

from __future__ import annotations

import pytest

from fleetwatch.hostnames import MAX_LENGTH, is_host_name, is_slurm_node_name


@pytest.mark.parametrize(
    "name",
    ["gpu-node-17", "a", "GPU_node.example.com", "10.0.0.7", "_x", "n0", "a" * MAX_LENGTH],
)
def test_host_names(name: str) -> None:
    assert is_host_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "-gpu",  # an option to a command
        ".gpu",
        "a" * (MAX_LENGTH + 1),
        "gpu-node-17\n",  # a trailing newline: `$` in a regex would let it through
        "gpu\nx",
        "gpu\tx",
        "gpu x",
        "gpu-a$(touch PWNED)",
        "gpu-b`touch X`",
        "gpu-c;touch X",
        "gpu-d|x",
        "gpu'x",
        'gpu"x',
        "gpu[1-8]",  # Slurm expands it into eight nodes
        "gpu-1,gpu-2",  # and this into two
        "[bold]x[/bold]",
        "gpü",  # not ASCII
        "gpu\udcff",  # an undecodable byte of a folder name
    ],
)
def test_not_host_names(name: str) -> None:
    assert not is_host_name(name)


@pytest.mark.parametrize("name", ["all", "ALL", "All", "aLL"])
def test_all_is_a_host_name_but_no_slurm_node_name(name: str) -> None:
    # scontrol update nodename=ALL (any case) updates every node of the cluster
    assert is_host_name(name) and not is_slurm_node_name(name)


@pytest.mark.parametrize("name", ["gpu-node-17", "all-gpus", "ball", "allx", "_all", "all.example"])
def test_slurm_node_names(name: str) -> None:
    assert is_slurm_node_name(name)


def test_what_is_no_host_name_is_no_slurm_node_name() -> None:
    assert not any(is_slurm_node_name(n) for n in ("gpu[1-8]", "a,b", "-h", "", "n 1"))
