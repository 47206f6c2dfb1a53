# Convenience aliases; the README's commands need only Python (python3 dev.py ...).
.PHONY: run test lint bench
run:
	python3 dev.py run
test:
	python3 dev.py test
lint:
	python3 dev.py check
bench:
	.venv/bin/python benchmarks/load_vs_pydicom.py
