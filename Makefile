# Two commands for a newcomer: `make demo` and `make test`. Both set up everything on first use:
# Debian packages (installed when run as root, else the exact apt-get line is printed), a .venv with
# the pinned Python packages (torch/torchvision from this machine's local wheels when present), the package.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
DEB_PACKAGES := libegl1 libegl-mesa0 libgl1-mesa-dri libgl1 libglib2.0-0 ffmpeg
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.stamp-installed
# The photoreal renderer (--scene-renderer blender): Blender as a Python module, which pins its own Python
# (3.11) and NumPy, in a virtual environment of its own; dfbvs talks to it over a pipe.
BLENDER_PYTHON ?= python3.11
BLENDER_VENV := .venv-blender
BPY_PIN := bpy==5.0.1
BLENDER_STAMP := $(BLENDER_VENV)/.stamp-installed

.PHONY: setup deb demo test clean blender

deb:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ]; then echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing Debian packages; run: sudo apt-get update && sudo apt-get install -y$$missing"; exit 1; fi; \
	fi

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_PINS)
	$(PIP) install -q -e '.[test,bench,robot,viz]'
	@touch $(STAMP)

setup: deb $(STAMP)

$(BLENDER_STAMP):
	@command -v $(BLENDER_PYTHON) >/dev/null || { echo "make blender needs $(BLENDER_PYTHON) (bpy is built for Python 3.11); set BLENDER_PYTHON=/path/to/python3.11"; exit 1; }
	@test -x $(BLENDER_VENV)/bin/python || $(BLENDER_PYTHON) -m venv $(BLENDER_VENV)
	$(BLENDER_VENV)/bin/pip install -q --upgrade pip
	$(BLENDER_VENV)/bin/pip install -q $(BPY_PIN)
	$(BLENDER_VENV)/bin/python -c "import bpy; print('Blender', bpy.app.version_string, 'ready in $(BLENDER_VENV)')"
	@touch $(BLENDER_STAMP)

blender: $(BLENDER_STAMP)

demo: setup
	$(VENV)/bin/dfbvs demo --out runs/demo

test: setup blender
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy
	$(PY) -m pytest -n 2 -q --durations=10
