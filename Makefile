# caffe-mlic: the README's two commands are `make demo` and `make test`.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
CLI   := $(VENV)/bin/caffe-mlic
export CAFFE_MLIC_CACHE ?= $(HOME)/.cache/caffe-mlic
# Quiet glog (errors only) unless asked otherwise.
export GLOG_minloglevel ?= 2
# GPU=1: `make caffe` / `make install` build / use the CUDA build of Caffe
# (its own cache folder); plain `make install` switches the venv back to CPU.
GPU ?= 0
export CAFFE_MLIC_GPU := $(GPU)

.PHONY: install deps caffe test test-gpu-build demo demo-scasnet bench prototxt clean clean-cache

install:                 ## Debian packages, venv, Caffe (cached; GPU=1: the CUDA build), our package
	@tools/install.sh

deps:
	@tools/install_deps.sh

caffe: deps              ## build Caffe into the cache (or check $$CAFFE_ROOT)
	@if [ -n "$$CAFFE_ROOT" ]; then echo "using CAFFE_ROOT=$$CAFFE_ROOT"; \
	 else tools/build_caffe.sh >/dev/null; fi

test: install            ## set up, then run the whole test suite
	$(PY) -m pytest -q tests $(PYTEST_ARGS)

# Not part of `make test` (each CUDA build takes 15-25 min on 2 cores): build
# the CPU Caffe and the CUDA ones with and without cuDNN (cached), then check
# them here, no GPU needed: they link, in CPU mode they match the CPU build,
# pycaffe gives device pointers, and our CUDA kernels compile to PTX
# (numba-cuda, put in the cache). Which Caffe the venv uses is unchanged.
test-gpu-build: deps     ## build the CUDA Caffe and check it against the CPU build (no GPU needed)
	@[ -x $(PY) ] || CAFFE_MLIC_GPU=0 tools/install.sh
	@CAFFE_MLIC_GPU=0 CAFFE_MLIC_PIP=$(VENV)/bin/pip tools/build_caffe.sh >/dev/null
	@CAFFE_MLIC_GPU=1 CAFFE_MLIC_PIP=$(VENV)/bin/pip tools/build_caffe.sh >/dev/null
	@CAFFE_MLIC_GPU=1 CAFFE_MLIC_CUDNN=0 CAFFE_MLIC_PIP=$(VENV)/bin/pip tools/build_caffe.sh >/dev/null
	@[ -f "$(CAFFE_MLIC_CACHE)/gpu-python/.done" ] && cmp -s tools/gpu-requirements.txt "$(CAFFE_MLIC_CACHE)/gpu-python/.done" || \
	 { rm -rf "$(CAFFE_MLIC_CACHE)/gpu-python" && $(VENV)/bin/pip install --quiet --only-binary :all: \
	   --target "$(CAFFE_MLIC_CACHE)/gpu-python" -r tools/gpu-requirements.txt && \
	   cp tools/gpu-requirements.txt "$(CAFFE_MLIC_CACHE)/gpu-python/.done"; }
	CAFFE_MLIC_GPU_BUILD_TESTS=1 $(PY) -m pytest -q tests/install/test_gpu_build.py $(PYTEST_ARGS)

demo: install            ## set up, then run the main job
	@$(PY) tools/demo.py

demo-scasnet: install   ## set up, then ScasNet in miniature (synthetic aerial tiles)
	@$(PY) tools/demo_scasnet.py

bench: install           ## print speed/memory ratios measured in one run
	$(CLI) bench

prototxt: install        ## regenerate prototxt/ from the NetSpec generators
	$(CLI) netgen --release -o prototxt
	$(CLI) scasnet netgen -o prototxt/scasnet

clean:                   ## remove the venv and build artefacts (not the Caffe cache)
	rm -rf $(VENV) *.egg-info build .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +

clean-cache:             ## remove the cached Caffe build too
	rm -rf "$(CAFFE_MLIC_CACHE)"
