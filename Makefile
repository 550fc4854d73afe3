# The two commands a newcomer needs (see README):
#   make demo   -- set everything up, then open the quickstart notebook in JupyterLab
#   make test   -- set everything up from a fresh clone, lint, and run the whole test suite
# Everything below installs from the project's own files; nothing is assumed on the machine but
# Python 3.11, Node.js/npm and (as root) apt-get for Debian's Chromium.

PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.camwidget-installed

.PHONY: demo test setup lint js pytest browser clean bench

# JupyterLab refuses to start as root unless told so (containers, CI machines).
demo: setup
	$(VENV)/bin/jupyter lab $$([ "$$(id -u)" = 0 ] && echo --allow-root) notebooks/01_quickstart.ipynb

test: setup lint js pytest

setup: $(STAMP) browser js/node_modules

# torch/torchvision are pinned here to the releases this project is tested with (they install from
# the local wheel cache on the reference machines; a looser pin would pull a newer multi-GB build).
# The tests compare camwidget with its peers (pytorch-grad-cam, torchcam), so the pins the benchmarks use
# go into the test environment too, without their dependencies (torch & co. are already there). OpenCV is
# the headless build: importing it must not need libGL or a display.
$(STAMP): pyproject.toml benchmarks/requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[demo,dev]'
	$(PY) -m pip install --quiet --no-deps -r benchmarks/requirements.txt
	$(PY) -c "import re, cv2, pytorch_grad_cam, torchcam; \
	  assert re.search(r'GUI:\s+NONE', cv2.getBuildInformation()), 'cv2 is not the headless build'"
	touch $(STAMP)

# Browser tests drive Debian's Chromium through Playwright (never `playwright install`).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; fi; }

js/node_modules: js/package.json js/package-lock.json
	cd js && npm ci --no-audit --no-fund --loglevel=error
	touch js/node_modules

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Rebuild the front-end bundle, fail if the committed one is stale, run the JS unit tests.
js: js/node_modules
	cd js && npm run --silent build && npm test --silent
	git diff --exit-code --stat -- camwidget/static || { echo "camwidget/static is stale: run 'make js' and commit it"; exit 1; }

pytest:
	$(PY) -m pytest -q -ra

bench: setup
	bash benchmarks/run.sh

clean:
	rm -rf $(VENV) js/node_modules artifacts
