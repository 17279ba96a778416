# frill-sweep. Every target runs `setup` first (idempotent, stamped), so a fresh clone
# needs nothing but `make sweep` or `make test`.
PY      := .venv/bin/python
GRID    ?= frill144
FIDELITY ?=
NAME    ?=
INDEX   ?= 0
STAMP   := .venv/.setup-stamp
FID     := $(if $(FIDELITY),--fidelity $(FIDELITY),)
SWEEPNAME := $(if $(NAME),--name $(NAME),)
# Resources per trial, and Tune's storage (a path every node sees, on a cluster).
RESOURCES := $(if $(CPUS),--cpus-per-trial $(CPUS),) $(if $(GPUS),--gpus-per-trial $(GPUS),) \
             $(if $(MEMORY),--memory-gb $(MEMORY),) $(if $(STORAGE),--storage $(STORAGE),)

.PHONY: setup sweep trial list status test test-all bench rankcheck curves report clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $@

sweep: setup            ## run or resume the sweep (default: 144 students, local fidelity) [CPUS= GPUS= MEMORY= STORAGE=]
	$(PY) -m sweep run --grid $(GRID) $(FID) $(SWEEPNAME) $(RESOURCES)

trial: setup            ## one trial in-process, no Ray: make trial GRID=smoke INDEX=1 [PDB=1]
	$(PY) -m sweep trial --grid $(GRID) --index $(if $(TRIAL),$(TRIAL),$(INDEX)) $(FID) $(if $(PDB),--pdb,)

list: setup
	$(PY) -m sweep list --grid $(GRID) $(FID)

status: setup
	$(PY) -m sweep status --name $(if $(NAME),$(NAME),$(GRID))

test: setup             ## the default suite (fast paths; slow ones are marked)
	$(PY) -m pytest -q

test-all: setup
	$(PY) -m pytest -q -m ""

bench: setup            ## writes results/bench/latest.json, appends to results/bench/history.jsonl
	$(PY) -m sweep.bench

rankcheck: setup        ## local vs 4x training on a 12-student slice: results/rankcheck/
	$(PY) -m sweep.rankcheck

curves: setup           ## learning curves of three students: results/curves/
	$(PY) -m sweep.curves

report: setup           ## make report NAME=frill144
	$(PY) -m results report $(if $(NAME),$(NAME),$(GRID))

clean:
	rm -rf .venv .cache results/runs
