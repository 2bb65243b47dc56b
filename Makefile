# The README's two commands: `make demo` (the whole loop) and `make test`. Both install what is missing.
.PHONY: install services demo test unit lint format test-guarantees stop

install:
	bash deploy/bootstrap.sh

services: install
	.venv/bin/ctrlgpt services up

demo: install
	.venv/bin/ctrlgpt demo

test: services lint
	.venv/bin/pytest -ra --durations=40

# The tests that need no service (no Kafka, Elasticsearch, doccano, Chromium): seconds, not minutes.
unit: install
	.venv/bin/pytest -q -m "not integration and not e2e and not delivery_guarantee"

lint: install
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

format: install
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

test-guarantees: services
	.venv/bin/pytest -ra -m delivery_guarantee

stop:
	.venv/bin/ctrlgpt stop
