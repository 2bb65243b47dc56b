# The README's two commands: `make demo` (the whole loop) and `make test`. Both install what is missing.
.PHONY: install services demo test test-guarantees stop

install:
	bash deploy/bootstrap.sh

services: install
	.venv/bin/ctrlgpt services up

demo: install
	.venv/bin/ctrlgpt demo

test: services
	.venv/bin/pytest -ra --durations=40

test-guarantees: services
	.venv/bin/pytest -ra -m delivery_guarantee

stop:
	.venv/bin/ctrlgpt stop
