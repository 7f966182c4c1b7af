# The two commands of the README. Both run the bootstrap first (quick when already done).
CARGO ?= cargo
ONEBASE_BIND ?= 127.0.0.1:8080
export ONEBASE_BIND

.PHONY: run test bootstrap build bench clean-data

run: bootstrap
	$(CARGO) build --release
	./target/release/onebase serve

test: bootstrap
	$(CARGO) test

bootstrap:
	@scripts/bootstrap

build:
	$(CARGO) build --release

# Removes the embedded cluster's data (asks first).
clean-data:
	@read -p "Delete ./data (all embedded database data)? [y/N] " a; [ "$$a" = y ] && rm -rf ./data || true
