"""`python -m tripletlib ...` is the same as the `tripletlib` command."""

from tripletlib.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
