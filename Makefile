.PHONY: bootstrap build dev test lint bench trigger listen soak

bootstrap:
	bash scripts/bootstrap.sh

build: bootstrap
	bash scripts/build.sh

dev: bootstrap
	bash scripts/dev.sh

test: bootstrap
	cargo test --workspace
	bash scripts/build.sh
	node --test --test-concurrency=1 tests/*.test.mjs

lint: bootstrap
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --target wasm32-unknown-unknown -p kyc-edge -- -D warnings

bench: build
	node bench/run.mjs

soak: build
	node bench/soak.mjs

# Against `make dev`'s sandbox: make trigger PROVIDER=align|argos|sumsub REF=cust-1 STATUS=approved [DROP=1] [REPLAY=1]
PROVIDER ?= align
trigger:
	@node scripts/trigger.mjs --provider "$(PROVIDER)" --ref "$(REF)" --status "$(STATUS)" --drop "$(DROP)" --replay "$(REPLAY)"

# Against `make dev`'s sandbox: make listen [FORWARD_TO=http://localhost:3000/hooks] [ALL=1]
listen:
	@node scripts/listen.mjs --forward-to "$(FORWARD_TO)" --all "$(ALL)"
