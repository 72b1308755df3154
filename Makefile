# fleetwatch: every target bootstraps .venv itself, so a fresh clone needs only python3 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-e2e test-bench lint typecheck ci-full verify bench bench-allocs-check \
	bench-delta-check bench-baseline bench-check bench-instructions-check bench-parse bench-replay \
	bench-latency bench-fleet bench-state gpu-check chaos fuzz fleet-demo fleet-check install-check \
	clean

install: $(STAMP)

$(STAMP): pyproject.toml setup.py src/fleetwatch/sources/_kmsgscan.c bench/alloccount/alloccount.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# builds the optional compiled kernel-record loop in place (pure Python without a compiler)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# the benchmarks' allocation counter: a C extension, built against the NumPy above
	$(BIN)/python -m pip install --quiet --no-build-isolation --force-reinstall --no-deps ./bench/alloccount
	touch $(STAMP)

# Each example is one incident: a folder of per-node folders, as collected from a fleet.
demo: install
	@for incident in examples/*/; do \
		echo; echo "== $$incident"; \
		$(BIN)/fleetwatch replay "$$incident" --output table || exit $$?; \
	done

# Every test but the benchmark gates' end-to-end ones (test-bench) and the long runs
# against real Prometheus, Alertmanager, Chromium, Slurm and Redis (test-e2e). One worker
# per core (pytest-xdist); every test keeps to its own tmp_path and loopback port 0.
test: install
	$(BIN)/python -m pytest -m "not bench and not e2e" -n auto

# Against real servers and a real browser on loopback, started and stopped by the tests
# (.ci/run installs them; each test skips, saying why, where one is missing).
test-e2e: install
	$(BIN)/python -m pytest -m e2e

# The benchmark gates' end-to-end tests: they measure in fresh processes and under
# callgrind (minutes); .ci/run runs them after ci-full.
test-bench: install
	$(BIN)/python -m pytest -m bench

lint: install
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts

typecheck: install
	$(BIN)/mypy

# The hard gate: the tests (not the benchmark gates' own: test-bench), the linters,
# the type checker and gate 1.
ci-full: test lint typecheck bench-allocs-check

# A user's install, for real: a fresh venv in a temporary folder, `pip install .` with no
# extras, wheels only and CC=/bin/false; then replay (with and without hyperscan) and
# watch --nvml's one-line hint. It downloads, so it is not in `make test`; .ci/run runs it.
install-check:
	$(PYTHON) scripts/install_check.py

# Every benchmark: allocations and time per event, each in a fresh process.
bench: install
	$(BIN)/python -m bench.gate table

# Gate 1: allocations per event against bench/registry.toml (exit 1 breach, 2 fail closed).
bench-allocs-check: install
	$(BIN)/python -m bench.gate allocs

# Gate 2: ns/event against the previous commit, measured A/B in one run (exit 1 slower).
bench-delta-check: install
	$(BIN)/python -m bench.delta --against HEAD~1

# Gate 2, deterministic: callgrind instructions/event against the previous commit (needs valgrind).
bench-instructions-check: install
	$(BIN)/python -m bench.delta --metric instructions --against HEAD~1

# Rewrite bench/baseline.json from this machine (gate 2 without --against reads it).
bench-baseline: install
	$(BIN)/python -m bench.delta --write-baseline

# Both gates.
bench-check: bench-allocs-check bench-delta-check

# Watch latency: a line appended to a followed file -> its finding at a loopback webhook (p50, p99).
bench-latency: install
	$(BIN)/python -m bench.watch_latency --findings 200
	$(BIN)/python -m bench.watch_latency --record fatal-aer --findings 20 --gap 1

# Fleet mode: events/s through one and two correlators, publish -> transition latency,
# state per shard, on a throwaway loopback redis-server (minutes; not part of CI).
bench-fleet: install
	command -v redis-server > /dev/null || (apt-get update && apt-get install -y redis-server)
	$(BIN)/python -m bench.fleet_speed

# Bytes of detector state per 10,000 live GPUs and jobs, with and without forgetting.
bench-state: install
	$(BIN)/python -m bench.state_size

# Crash consistency: 100 kill -9 of a real watch against an uninterrupted run (minutes).
chaos: install
	$(BIN)/python -m tests.chaos --kills 100

# On a machine with an NVIDIA GPU: the NVML poller for 20 s under load (exit 0 without a GPU).
gpu-check: install
	$(BIN)/python scripts/gpu_check.py --seconds 20

# A fast pre-push check: lint, types, and the tests with fewer property examples.
verify: install
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/mypy
	HYPOTHESIS_PROFILE=quick $(BIN)/python -m pytest -x -m "not slow and not bench and not e2e"

# Parse throughput on a generated 10 M-line kernel log, beside grep (minutes; not part of CI).
bench-parse: install
	$(BIN)/python bench/parse_throughput.py --lines 10000000

# Replay and parse beside grep, with peak memory: a 10 M-line dmesg, a 2 M-line mixed
# fleet, a 1 GB simulated fleet, a 1 M-line journal (tens of minutes; not part of CI).
bench-replay: install
	$(BIN)/python -m bench.replay_speed --dmesg-lines 10000000 --fleet-lines 2000000 --big-mb 1000 \
		--journal-lines 1000000

# The readers against a million mutated records each, seeded from tests/data (minutes;
# not part of CI: tests/sources/test_fuzz.py runs it small). Exit 1 on any crash.
fuzz: install
	$(BIN)/python -m bench.fuzz --records 1000000

# Fleet mode on this machine: redis-server on a free loopback port, 2 correlators, an
# announcer, 2 live agents following examples/, the findings (exit 1 unless replay's);
# everything stopped after (installs redis-server when missing, as .ci/run does).
fleet-demo: install
	command -v redis-server > /dev/null || (apt-get update && apt-get install -y redis-server)
	$(BIN)/python -m fleetwatch.fleet.demo

# Fleet mode under failures: 2 agents over every simulated scenario, 3 correlators, one
# killed, one paused past its lease, a fourth added; equal to replay, nothing lost or
# doubled (exit 1 otherwise). ~15 s.
fleet-check: install
	command -v redis-server > /dev/null || (apt-get update && apt-get install -y redis-server)
	$(BIN)/python -m fleetwatch.fleet.check

clean:
	rm -rf $(VENV) build src/*.egg-info src/fleetwatch/sources/*.so
