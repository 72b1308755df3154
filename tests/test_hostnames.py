"""Which node names may go into a command: host names, and nothing a shell or Slurm parses."""

from __future__ import annotations

import pytest

from fleetwatch.hostnames import MAX_LENGTH, is_host_name


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
