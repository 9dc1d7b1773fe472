# The program `dhatc run`'s launcher re-executes the interpreter on (as a
# script: `python -c` would do, but 3.13's -c imports linecache with the
# current directory first on sys.path).  Python put this file's directory
# first on sys.path; it comes off before anything is imported, so nothing is
# ever imported from there nor from the current directory.  No docstring and
# no names bound: __main__'s namespace becomes the target's (dhatc._bootstrap).
if __name__ == "__main__":
    if not (__import__("sys").flags.isolated or getattr(__import__("sys").flags, "safe_path", False)):
        del __import__("sys").path[0]
    __import__("dhatc._bootstrap", fromlist=["_"]).bootstrap()
