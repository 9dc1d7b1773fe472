"""``python -m dhatc COMMAND ...``: see dhatc._cli."""

from ._cli import main

raise SystemExit(main())
