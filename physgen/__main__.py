"""``python -m physgen`` runs the command-line interface."""

from physgen.cli import main

__all__: list[str] = []

raise SystemExit(main())
