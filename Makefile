# facecast: two commands for a fresh machine (Debian, Python 3.11):
#   make demo   - set up a virtualenv and run the demo (server + stream + record + files)
#   make test   - set up a virtualenv with the dev/training extras and run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip -q --disable-pip-version-check
SYSPKGS := espeak-ng festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts \
	festvox-czech-krb festvox-hi-nsk festvox-mr-nsk festvox-te-nsk \
	festvox-italp16k festvox-itapc16k festvox-czech-dita festvox-czech-machac festvox-czech-ph \
	festvox-suopuhe-lj festvox-suopuhe-mv festvox-ca-ona-hts festvox-ru

.PHONY: demo test setup setup-dev sysdeps bench train clean

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install "numpy<2" -e ".[preview]"
	touch $@

$(VENV)/.dev: $(VENV)/.base
	$(PIP) install "numpy<2" torch==2.13.0 -e ".[dev,train,preview,usd,blender]"
	@if command -v npm >/dev/null; then \
		npm install --prefix .tools --no-audit --no-fund gltf-validator@2.0.0-dev.3.10 >/dev/null; fi
	touch $@

setup: $(VENV)/.base
setup-dev: $(VENV)/.dev

# Text-to-speech engines used by the training-data generator and its tests.
sysdeps:
	@if dpkg-query -W -f='$${Status}\n' $(SYSPKGS) 2>/dev/null | grep -qv "ok installed" || \
	    ! dpkg-query -W $(SYSPKGS) >/dev/null 2>&1; then missing=1; else missing=; fi; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSPKGS) >/dev/null; \
	else echo "facecast: please run: sudo apt-get install $(SYSPKGS)"; fi

demo: setup
	$(VENV)/bin/facecast demo

test: setup-dev sysdeps
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/run_all.py

train: setup-dev sysdeps
	$(PY) -m facecast_runtime.training.tts --out work_data/tts --minutes 60 --seed 0
	# both shipped models, side by side with one thread each, exactly as they were made
	$(PY) -m facecast_runtime.training.train --set train.threads=1 & pid=$$!; \
	$(PY) -m facecast_runtime.training.train --set train.threads=1 --set lookahead_frames=5 \
		--name la120 && wait $$pid

clean:
	rm -rf $(VENV) facecast_demo_out .pytest_cache
