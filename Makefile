# Two entry points (see README.md):
#   make demo   build; image the whole standard library and real programs;
#               show the speed-ups (materialisation, whole-process imports,
#               launches through a warm server)
#   make test   the test suite on every supported interpreter, each in its
#               own venv, with the C core built with -Werror
# Interpreter names (tools/python-for): pyenv builds by version, 3.14 and
# 3.15 from Debian unstable's packages (tools/unstable-python.sh), and
# Debian's own /usr/bin/python3 as "system" where it exists.
PYTHONS ?= 3.11.7 3.12.1 3.13.0 3.14 3.15 $(if $(wildcard /usr/bin/python3),system)
VENVS := $(foreach v,$(PYTHONS),.venv/$(v))
PYTEST_ARGS ?=
comma := ,

BENCH_VENVS := $(foreach v,$(PYTHONS),.venv/bench-$(v))
BENCH_REQS ?= bench/requirements.txt

.PHONY: demo test bench bench-quick clean $(VENVS) $(BENCH_VENVS)

# (Re)install the package into one venv per interpreter.
$(VENVS): .venv/%:
	@py=$$(tools/python-for $*) && \
	    { $@/bin/python -c pass 2>/dev/null || { rm -rf $@ && $$py -m venv $@; }; }
	$@/bin/python -m pip install -q ".[test]"
	WARMSTART_CFLAGS=-Werror $@/bin/python -m pip install -q --no-deps --force-reinstall .

# Benchmark venvs: pinned workloads, warmstart, and code-data-share where
# it builds (it supports up to 3.12).
$(BENCH_VENVS): .venv/bench-%:
	@py=$$(tools/python-for $*) && \
	    { $@/bin/python -c pass 2>/dev/null || { rm -rf $@ && $$py -m venv $@; }; }
	$@/bin/python -m pip install -q -r $(BENCH_REQS)
	$@/bin/python -m pip install -q --no-deps --force-reinstall .
	-$@/bin/python -m pip install -q code-data-share 2>/dev/null

# The start-up benchmark suite (bench/suite.py): results in bench/results/.
bench: $(BENCH_VENVS)
	.venv/bench-$(firstword $(PYTHONS))/bin/python bench/suite.py --pythons $(subst $(eval) ,$(comma),$(PYTHONS))

bench-quick:
	$(MAKE) BENCH_REQS=bench/requirements-quick.txt $(BENCH_VENVS)
	.venv/bench-$(firstword $(PYTHONS))/bin/python bench/suite.py --quick --pythons $(subst $(eval) ,$(comma),$(PYTHONS))

# make demo: venvs of its own holding warmstart alone (pip, a workload, comes
# with every venv), the C core built as for make test.  Each script writes
# its results to $(DEMO_OUT)/<python>/ and the closing table is made of
# those; V=1 passes -v (the scripts' diagnostic lines).
DEMO_VENVS := $(foreach v,$(PYTHONS),.venv/demo-$(v))
DEMO_OUT := build/demo
DEMO_FLAGS := $(if $(filter-out 0,$(V)),-v)
.PHONY: $(DEMO_VENVS)

$(DEMO_VENVS): .venv/demo-%:
	@py=$$(tools/python-for $*) && \
	    { $@/bin/python -c pass 2>/dev/null || { rm -rf $@ && $$py -m venv $@; }; }
	@echo "building warmstart into $@"
	@WARMSTART_CFLAGS=-Werror $@/bin/python -m pip install -q --no-deps --force-reinstall .

# The minutes: about 2 per interpreter here (2-core VM, 2026-12-05), 40 s of
# them materialise.py's sleeps; the rest is whole-process runs.
demo:
	@echo "make demo: $(PYTHONS); about $$(( $(words $(PYTHONS)) * 2 )) minutes" \
	    "(about 2 per interpreter, more the first time, for the venvs)."
	@echo "It sleeps on purpose: 10 s before each of 4 cold runs per interpreter," \
	    "so that they start as after a pause (nothing drops the page cache)."
	@$(MAKE) --no-print-directory $(DEMO_VENVS)
	@rm -rf $(DEMO_OUT)
	@for v in $(PYTHONS); do \
	    echo "== Python $$v"; py=.venv/demo-$$v/bin/python; out=$(DEMO_OUT)/$$v; \
	    mkdir -p $$out && \
	    $$py bench/materialise.py --repeat 5 --json $$out/materialise.json $(DEMO_FLAGS) && \
	    $$py bench/import_time.py --json $$out/import_time.json $(DEMO_FLAGS) && \
	    $$py bench/server_launch.py --json $$out/server_launch.json $(DEMO_FLAGS) || exit 1; \
	done
	@echo
	@.venv/demo-$(firstword $(PYTHONS))/bin/python bench/demo_summary.py \
	    $(foreach v,$(PYTHONS),$(DEMO_OUT)/$(v))

test: $(VENVS)
	@for v in $(PYTHONS); do \
	    echo "== Python $$v"; \
	    (cd tests && $(CURDIR)/.venv/$$v/bin/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) .) || exit 1; \
	done

clean:
	rm -rf .venv build src/*.egg-info src/warmstart/*.so
