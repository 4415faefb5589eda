# Every test, from a fresh clone: installs what the tests need, runs them, cleans up.
.PHONY: test serve lint
test:
	./scripts/test.sh

# The service on the embedded example rules, at http://127.0.0.1:3000/assignment
serve:
	cargo run --profile local -- serve

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
