.PHONY: bootstrap build dev test lint bench trigger cron env listen soak

bootstrap:
	bash scripts/bootstrap.sh

build: bootstrap
	bash scripts/build.sh

dev: bootstrap
	bash scripts/dev.sh

test: bootstrap
	bash scripts/bootstrap.sh --browser
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

# Against the running `make dev` (found through $(PERSIST_DIR)/dev.json; scripts/local.mjs):
# make trigger PROVIDER=align|argos|sumsub|persona REF=cust-1 STATUS=approved [DROP=1] [REPLAY=1] [WAIT=0]
PROVIDER ?= align
WAIT ?= 1
trigger:
	@node scripts/trigger.mjs --provider "$(PROVIDER)" --ref "$(REF)" --status "$(STATUS)" --drop "$(DROP)" --replay "$(REPLAY)" --wait "$(WAIT)"

# One run of the Cron Trigger, and what it found (due, queued).
cron:
	@node scripts/cron.mjs

# eval "$$(make -s env)": KYC_EDGE, KYC_SANDBOX and API_TOKEN of the running `make dev`.
env:
	@node scripts/local.mjs

# Every notification the sandbox's endpoint receives: make listen [FORWARD_TO=http://localhost:3000/hooks] [ALL=1]
listen:
	@node scripts/listen.mjs --forward-to "$(FORWARD_TO)" --all "$(ALL)"
