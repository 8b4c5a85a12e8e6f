"""``python -m bench``: the whole suite in one command (see bench/run.py)."""

from bench.run import main

if __name__ == "__main__":
    raise SystemExit(main())
