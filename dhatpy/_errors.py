class CommandError(Exception):
    """A request a command cannot carry out, in words the user can act on; the CLI prints 'dhatc COMMAND: error: MESSAGE' and exits 2."""
