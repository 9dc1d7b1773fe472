"""dhatc demo: profile a small program's heap, then show where it went.

Writes dhat-heap.json (open it in Valgrind's DHAT viewer) and prints the
crate's summary, then the top program points read back from the file, and a
heap-usage test made with HeapStats.
"""

import json
import os

import dhatc


def parse_records(n):
    # Many short-lived strings and a list that keeps growing.
    records = []
    for i in range(n):
        line = f"{i},name-{i},{i * 3.5}"
        fields = line.split(",")
        records.append((int(fields[0]), fields[1], float(fields[2])))
    return records


def build_index(records):
    # A dict that lives to the end: it shows up "At t-end".
    return {name: (i, value) for i, name, value in records}


def main():
    with dhatc.Profiler(file_name="dhat-heap.json"):
        records = parse_records(20000)
        index = build_index(records)
        del records  # freed after the peak: counts "At t-gmax", not "At t-end"
        print(f"demo: indexed {len(index):,} records")

    with open("dhat-heap.json") as f:
        data = json.load(f)
    print("\ndemo: top program points by total bytes:")
    for pp in sorted(data["pps"], key=lambda pp: -pp["tb"])[:3]:
        where = data["ftbl"][pp["fs"][1]] if len(pp["fs"]) > 1 else data["ftbl"][pp["fs"][0]]
        print(f"  {pp['tb']:>10,} bytes in {pp['tbk']:>6,} blocks, {pp['eb']:>9,} live at end  {where}")

    # Heap-usage testing: exact figures, no file.
    with dhatc.Profiler(testing=True):
        b1 = bytes(1000)
        b2 = bytes(2000)
        del b1
        stats = dhatc.HeapStats.get()
    print(f"\ndemo: testing mode, b1 = bytes(1000); b2 = bytes(2000); del b1:\n  {stats}")

    viewer = "/usr/libexec/valgrind/dh_view.html"
    print(
        f"\ndemo: open {viewer if os.path.exists(viewer) else 'dh_view.html (Valgrind 3.17+)'} "
        f"in a browser and load {os.path.abspath('dhat-heap.json')}"
    )


if __name__ == "__main__":
    main()
