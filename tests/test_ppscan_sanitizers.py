"""dhatc._ppscan parses untrusted text in C: here it is built with
AddressSanitizer and UBSan and fed thousands of mutated and truncated files
in dhatc's layout, Valgrind's (reads, writes, access counts) and random
white space and key orders (a fixed seed), and hostile arguments to its
helpers.  A wrong read or write aborts the child; its results are checked
elsewhere (tests/test_dhat_reader_scan.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FUZZ = r'''
import random, struct, sys
sys.path.insert(0, sys.argv[1])
import _ppscan

KEYS = ("tb", "tbk", "tl", "mb", "mbk", "gb", "gbk", "eb", "ebk")
IGNORED = ("rb", "wb")
ACC = (64, 65535)
rng = random.Random(20261202)


def ws():
    return rng.choice(["", "", " ", "\n", "\t", "\r\n  "])


def line(layout, number):
    pairs = [(k, str(rng.choice([0, 1, rng.randrange(10**6), 2**64 - 1]))) for k in KEYS]
    # Distinct frames (a repeat makes scan() read none): the first says which PP.
    frames = [str(number + 1)] * (number > 0) + [str(rng.randrange(1, 500))
                                                 for _ in range(rng.randrange(0, 6))]
    if layout == "dhatc":
        return "{" + ",".join(f'"{k}":{v}' for k, v in pairs) + ',"fs":[' + ",".join(frames) + "]}"
    pairs += [(k, str(rng.randrange(10**4))) for k in IGNORED]
    if rng.random() < 0.7:
        acc = []
        for _ in range(rng.randrange(4)):  # a count, after a repeat count at times
            acc += [-rng.randrange(1, 20)] * (rng.random() < 0.4) + [rng.choice([0, 1, 65535])]
        pairs.append(("acc", "[" + ",".join(map(str, acc)) + "]"))
    pairs.append(("fs", "[" + ",".join(ws() + f + ws() for f in frames) + "]"))
    if layout == "valgrind":
        return "{" + "\n  ,".join(f'"{k}":{v}' for k, v in pairs) + "\n  }"
    rng.shuffle(pairs)
    return "{" + ",".join(f'{ws()}"{k}"{ws()}:{ws()}{v}{ws()}' for k, v in pairs) + "}"


goods = {layout: (",\n" if layout == "dhatc" else "\n ,").join(line(layout, n) for n in range(200))
         for layout in ("dhatc", "valgrind", "random")}
alphabet = '0123456789{}[],:"\n\t\r tbkfsacrw\\\u00e9\u4e2d\U0001F600-+.e'
for layout, good in goods.items():  # not mutated: read to the end
    assert _ppscan.scan(good, 0, KEYS, 0, True, IGNORED, ACC)[1] == 200, layout
scanned = 0
for n in range(9000):
    good = goods[("dhatc", "valgrind", "random")[n % 3]]
    text = list(good)
    for _ in range(rng.randrange(1, 8)):
        op, at = rng.randrange(4), rng.randrange(len(text) + 1)
        if op == 0 and text:
            del text[min(at, len(text) - 1)]
        elif op == 1:
            text.insert(at, rng.choice(alphabet))
        elif op == 2 and text:
            text[min(at, len(text) - 1)] = rng.choice(alphabet)
        else:
            text = text[:at]
    text = "".join(text)
    start = rng.randrange(0, max(1, len(text) // 4)) if rng.random() < 0.2 else 0
    if rng.random() < 0.8:
        result = _ppscan.scan(text, start, KEYS, 0, rng.random() < 0.5, IGNORED, ACC)
    else:
        result = _ppscan.scan(text, start, KEYS, 0, rng.random() < 0.5)
    if result is None:
        continue
    scanned += 1
    end, count, figures, indices, offsets, hashes, highest, sums, accesses = result
    starts = struct.pack("Q", 0) + bytes(offsets)
    _ppscan.keys(bytes(indices), starts, 4)
    _ppscan.sorted_keys(bytes(indices), starts, 4)
    order = list(range(count))
    rng.shuffle(order)
    _ppscan.gather(bytes(figures), order, 8 * len(KEYS))
    _ppscan.match(bytes(indices), starts, bytes(indices), starts)

refused = 0
for _ in range(3000):
    data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64)))
    offsets = bytes(rng.randrange(256)
                    for _ in range(8 * rng.randrange(0, 6) + rng.choice([0, 0, 0, 3])))
    calls = [lambda: _ppscan.keys(data, offsets, rng.randrange(-1, 5)),
             lambda: _ppscan.sorted_keys(data, offsets, rng.randrange(-1, 5)),
             lambda: _ppscan.gather(data, [rng.randrange(-2, 10) for _ in range(3)],
                                    rng.randrange(-1, 9)),
             lambda: _ppscan.match(data, offsets, data, offsets)]
    for call in calls:
        try:
            call()
        except (ValueError, IndexError, OverflowError):
            refused += 1
print(f"scanned {scanned}, refused {refused}")
'''


def _runtime(name: str) -> str:
    path = subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True,
                          text=True, check=True).stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else ""


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")
def test_ppscan_under_sanitizers(tmp_path: Path) -> None:
    runtimes = [_runtime("libasan.so"), _runtime("libubsan.so")]
    if not all(runtimes):
        pytest.skip("gcc has no AddressSanitizer/UBSan runtime here")
    module = tmp_path / f"_ppscan{sysconfig.get_config_var('EXT_SUFFIX')}"
    subprocess.run(["gcc", "-shared", "-fPIC", "-std=c11", "-Wall", "-Wextra", "-Werror", "-O1",
                    "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                    "-fno-omit-frame-pointer", "-I", sysconfig.get_paths()["include"],
                    str(ROOT / "src" / "dhatc" / "ppscan.c"), "-o", str(module)], check=True)
    script = tmp_path / "fuzz.py"
    script.write_text(FUZZ)
    # PYTHONMALLOC=malloc: every object from malloc, where the sanitizer sees its bounds.
    env = dict(os.environ, LD_PRELOAD=":".join(runtimes), PYTHONMALLOC="malloc",
               ASAN_OPTIONS="detect_leaks=0", UBSAN_OPTIONS="print_stacktrace=1")
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    scanned, refused = (int(word.rstrip(",")) for word in proc.stdout.split()[1::2])
    assert scanned > 300 and refused > 1000, proc.stdout  # both parts really ran
