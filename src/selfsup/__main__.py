"""`python -m selfsup` is the same as the `selfsup` command (and what torchrun launches)."""

from selfsup.cli import main

main()
