# optout: `make run` starts the local stack, `make test` runs everything CI runs.
SHELL := /bin/bash
PYTHON ?= $(shell .ci/find-python)
VENV := .venv
SAM_VENV := .venv-sam
CHECKOV_VENV := .venv-checkov
BIN := $(VENV)/bin
export SAM_CLI_TELEMETRY := 0

.PHONY: run test unit lint typecheck template lock clean build deploy help demo bench soak audit openapi

help:
	@echo "make run    start the local stack (optout local); its state survives a restart, FRESH=1 starts empty"
	@echo "make test   lint, type-check, template checks and the whole test suite"
	@echo "make demo   1,000 users, opt-outs, bounces, STOPs, a policy change and a breach alert, with reports"
	@echo "make bench  throughput, AWS calls per recipient, latency, cold start, cost (SIZE=10000)"
	@echo "make soak   5,000 recipients and 1,000 opt-outs under 5% injected AWS faults, then the invariants"
	@echo "make audit  pip-audit over the locked dependencies (needs its vulnerability service)"
	@echo "make build  sam build;  make deploy ENV=dev|staging|prod  sam deploy"
	@echo "make lock   re-pin requirements/*.txt and the layer's requirements.txt"

$(BIN)/.installed: requirements/dev.txt pyproject.toml
	@echo "optout: installing the pinned development dependencies into $(VENV) (the first run only; about a minute)" >&2
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements/dev.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

$(SAM_VENV)/.installed: requirements/sam.txt
	test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install -q --disable-pip-version-check -r requirements/sam.txt
	touch $@

$(CHECKOV_VENV)/.installed: requirements/checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q --disable-pip-version-check -r requirements/checkov.txt
	touch $@

# State survives a restart (in .optout-state/); FRESH=1 starts empty.
run: $(BIN)/.installed
	$(BIN)/optout local $(if $(FRESH),--fresh)

demo: $(BIN)/.installed
	$(BIN)/optout demo

soak: $(BIN)/.installed
	$(BIN)/optout soak --recipients $(or $(SIZE),5000) --opt-outs 1000 --fault-rate 0.05

# Needs the vulnerability database service, so it stays out of make test and CI.
audit:
	test -x .venv-audit/bin/pip-audit || ($(PYTHON) -m venv .venv-audit && .venv-audit/bin/pip install -q pip-audit)
	.venv-audit/bin/pip-audit -r requirements/dev.txt -r layers/optout/requirements.txt

openapi: $(BIN)/.installed
	$(BIN)/optout openapi --out docs/openapi.json

bench: $(BIN)/.installed
	$(BIN)/optout bench --size $(or $(SIZE),10000)

# vulture: no dead code. Frameworks' names are skipped by pattern; every other exception is named,
# with who uses it, in tools/vulture_whitelist.py (tests are not scanned: see its docstring).
lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/bandit -q -r layers/optout/optout tools/optout_local functions
	$(BIN)/lint-imports --no-cache --no-logo  # the layer's contexts import downward only ([tool.importlinter])
	$(BIN)/vulture layers/optout/optout functions tools/optout_local tools/vulture_whitelist.py --min-confidence 60 \
	  --ignore-decorators '@app.*,@*.command,@*.group,@field_validator,@model_validator' \
	  --ignore-names 'lambda_handler,_aws_*,do_[A-Z]*,_deserialize_*,model_config'

typecheck: $(BIN)/.installed
	$(BIN)/mypy layers/optout/optout tools/optout_local functions

template: $(BIN)/.installed $(SAM_VENV)/.installed $(CHECKOV_VENV)/.installed
	$(BIN)/cfn-lint template.yaml
	$(SAM_VENV)/bin/sam validate --lint --template template.yaml --region us-east-1
	# every skip carries its reason in the resource's Metadata
	$(CHECKOV_VENV)/bin/checkov -f template.yaml --framework cloudformation --skip-download --quiet --compact

IAM_USAGE := build/iam-usage

# Every local stack the tests start records which grants its functions used; a grant no test
# used fails the run unless the template's Metadata says why (`optout iam report`).
test: lint typecheck template
	rm -rf $(IAM_USAGE)
	OPTOUT_IAM_USAGE=$(CURDIR)/$(IAM_USAGE) OPTOUT_SAM=$(SAM_VENV)/bin/sam $(BIN)/pytest
	$(BIN)/optout iam report --usage $(IAM_USAGE) --check > $(IAM_USAGE)/report.txt \
	  || { cat $(IAM_USAGE)/report.txt; exit 1; }
	@echo "least privilege: every grant used by a test or explained ($(IAM_USAGE)/report.txt)"

unit: $(BIN)/.installed
	$(BIN)/pytest tests/unit

build: $(SAM_VENV)/.installed
	$(SAM_VENV)/bin/sam build

deploy: build
	$(SAM_VENV)/bin/sam deploy --config-env $(or $(ENV),dev)

lock:
	rm -rf /tmp/optout-lock && $(PYTHON) -m venv /tmp/optout-lock/dev && $(PYTHON) -m venv /tmp/optout-lock/layer
	/tmp/optout-lock/dev/bin/pip install -q -r requirements/dev.in
	(echo "# Development lock: every package of the dev venv, pinned. Regenerate with \`make lock\`."; \
	  /tmp/optout-lock/dev/bin/pip freeze --exclude-editable) > requirements/dev.txt
	$(PYTHON) -m venv /tmp/optout-lock/checkov && /tmp/optout-lock/checkov/bin/pip install -q checkov
	(echo "# checkov in its own venv (its pins clash with the project's). Regenerate with \`make lock\`."; \
	  /tmp/optout-lock/checkov/bin/pip freeze) > requirements/checkov.txt
	# botocore comes into the layer with aws-xray-sdk and shadows the runtime's: pin it to the runtime's
	grep -viE '^(boto3|botocore|s3transfer|urllib3|jmespath|python-dateutil|six)==' requirements/dev.txt > /tmp/optout-lock/dev-constraints.txt
	/tmp/optout-lock/layer/bin/pip install -q -r requirements/layer.in -c requirements/lambda-runtime.txt -c /tmp/optout-lock/dev-constraints.txt
	(echo "# Built into the Lambda layer by \`sam build\` (layers/optout/Makefile). Pinned; regenerate with \`make lock\`."; \
	  echo "# botocore comes in as a dependency of aws-xray-sdk and shadows the runtime's own (layers come first"; \
	  echo "# on the path), so it is pinned to the runtime's version (requirements/lambda-runtime.txt)."; \
	  /tmp/optout-lock/layer/bin/pip freeze) > layers/optout/requirements.txt

clean:
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) .venv-audit .aws-sam build .pytest_cache .mypy_cache .ruff_cache
