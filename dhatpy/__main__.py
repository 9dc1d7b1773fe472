"""``python -m dhatc run ...``: see dhatc._cli."""

from ._cli import main

main()
