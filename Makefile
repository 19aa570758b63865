# Thin aliases: every target runs scripts/stack.py, which Windows users run directly.
PYTHON ?= python3
STACK = $(PYTHON) scripts/stack.py

.PHONY: up down clean test test-mariadb smoke faults chaos cluster bench bench-nodes status dead-letters replay-dead logs ps

up:      ## start RabbitMQ on its own network, then the compose services
	$(STACK) up

down:    ## stop everything; data volumes stay
	$(STACK) down

clean:   ## stop everything and delete the data volumes
	$(STACK) clean

test:    ## ruff, mypy, unit and integration tests (brings up its own copy of the system)
	$(STACK) test

test-mariadb:  ## the assignment, contract, inventory, update and migration tests on MariaDB
	$(STACK) test-mariadb

smoke:   ## ruff, mypy, unit tests, then the assignment's checklist on a throwaway copy (a few minutes)
	$(STACK) smoke

faults:  ## only the fault-injection tests (part of `make test` too)
	$(STACK) test -m faults

chaos:   ## mixed load under seeded random faults, then invariants (CHAOS_DURATION, CHAOS_SEED; part of `make test`)
	$(STACK) test -m chaos

cluster: ## only the three-node RabbitMQ cluster tests (part of `make test` too)
	$(STACK) test -m cluster

bench:   ## speed and memory next to same-run ceilings; writes bench/results/latest.json
	$(STACK) bench

bench-nodes:  ## inserts on one RabbitMQ node against a three-node cluster, in one run (two throwaway copies)
	$(STACK) bench --nodes 1,3

status:  ## each container's state and health, each queue's depth and consumers, the exchange's bindings
	$(STACK) status

dead-letters:  ## what each .dead queue holds (request id, reason, first bytes), left in place
	$(STACK) dead-letters

replay-dead:   ## publish a .dead queue's messages back to their queue once: make replay-dead QUEUE=insert_record
	$(STACK) replay-dead $(QUEUE)

logs:    ## follow the logs of every compose service
	$(STACK) logs

ps:      ## the compose services and their health
	$(STACK) ps
