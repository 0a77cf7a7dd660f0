# Safehold — the two commands of the README, and a few for developers.
SHELL := /bin/bash
APP := $(or $(CARGO_TARGET_DIR),target)/debug/safehold-app
.DEFAULT_GOAL := help
# The packages every cargo test command names, as make test does (scripts/test.sh): one selection,
# one set of features, so the test binaries make test built are not built again.
PACKAGES := -p safehold-core -p safehold-cli -p safehold-e2e -p safehold-app -p safehold-appimage

.PHONY: help run test app ui deps bindings lint bench fuzz-schemas package pictures

help:
	@echo "make run   - install what is missing, build, launch the app on the demo platform"
	@echo "make test  - install what is missing, run every test"
	@echo "make package - build the Debian package and the AppImage (target/package/safehold_<version>_amd64.{deb,AppImage})"

deps:
	scripts/deps.sh build

ui: deps
	cd ui && npx vite build --logLevel warn

app: ui
	@if [ ! -x $(APP) ]; then echo "First build: about 10 minutes on a two-core machine (cargo shows its progress below); later runs start in seconds."; fi
	cargo build -p safehold-app -p safehold-cli

## Launch the desktop app (the demo platform is set up on first launch). Headless machines get Xvfb.
run: app
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ]; then $(APP); \
	else echo "no display: running under Xvfb (install a desktop session to see the window)"; \
	  command -v xvfb-run >/dev/null || scripts/deps.sh test; \
	  xvfb-run -a -s '-screen 0 1280x800x24' dbus-run-session -- $(APP); fi

test:
	scripts/test.sh

## The Debian package: the app with its icon and menu entry, and the safehold CLI on the PATH.
package:
	scripts/package.sh

## The README's pictures (docs/tabs/*.png, docs/screenshot.png) taken anew by the end-to-end tests.
pictures:
	SAFEHOLD_WRITE_PICTURES=1 SAFEHOLD_TEST_ARGS="--test e2e -- every_tab_fits_the_window_at_common_sizes a_tenant_restore_is_planned" scripts/test.sh

## Regenerate ui/src/api/bindings.ts from the Rust types and ui/src/api/commands.ts from the shell's commands.
bindings:
	SAFEHOLD_WRITE_BINDINGS=1 cargo test $(PACKAGES) --test engine bindings
	SAFEHOLD_WRITE_BINDINGS=1 cargo test $(PACKAGES) --test e2e commands::

## Benchmarks against pg_dump/pg_restore (not part of make test). BENCH_SCALE=0.25 for a quick run.
bench:
	scripts/deps.sh bench
	cargo build --release -p safehold-cli
	bench/run.py
	bench/protect.py
	bench/protect_tenant.py
	bench/chain.py
	bench/apps.py

## The generated-schema property suite for longer than make test runs it:
## make fuzz-schemas SEED=1234 N=2000 (a random seed when SEED is not given; keeps going past failures).
fuzz-schemas:
	SAFEHOLD_SCHEMA_SEED=$(SEED) SAFEHOLD_SCHEMA_COUNT=$(or $(N),1000) SAFEHOLD_SCHEMA_SECONDS=$(or $(SECONDS_BUDGET),86400) SAFEHOLD_SCHEMA_KEEP_GOING=1 \
	  cargo test $(PACKAGES) --test engine schemas::generated_schemas_keep_every_property -- --nocapture

lint:
	cargo clippy --workspace --all-targets -- -D warnings
	cd ui && npx tsc --noEmit
