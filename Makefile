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

demo: $(VENVS)
	@for v in $(PYTHONS); do \
	    echo "== Python $$v"; \
	    .venv/$$v/bin/python bench/materialise.py --repeat 5 || exit 1; \
	    .venv/$$v/bin/python bench/import_time.py || exit 1; \
	    .venv/$$v/bin/python bench/server_launch.py || exit 1; \
	done

test: $(VENVS)
	@for v in $(PYTHONS); do \
	    echo "== Python $$v"; \
	    (cd tests && $(CURDIR)/.venv/$$v/bin/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) .) || exit 1; \
	done

clean:
	rm -rf .venv build src/*.egg-info src/warmstart/*.so
