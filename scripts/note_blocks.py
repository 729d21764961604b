"""Writes a generated block into every note that has its heading, for notes_measured.py and
notes_kernel.py.

The block sits between `<!-- NAME:begin -->` and `<!-- NAME:end -->` under `## HEADING`; it is
inserted under the heading the first time and replaced afterwards. Text outside it is left as
it is.
"""
import os, re


def write_blocks(notes, heading, name, block, skip=()):
    """For each notes/<model>.md with `## heading` (and not in `skip`), puts `block(model)` in
    place, when it gives one. Returns the file names written."""
    written = []
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    for file in sorted(os.listdir(notes)):
        path = os.path.join(notes, file)
        if not file.endswith(".md") or file in skip or not os.path.isfile(path):
            continue
        text = open(path).read()
        if f"## {heading}\n" not in text:
            continue
        new = block(file[:-3])
        if new is None:
            continue
        if begin in text:
            text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: new, text, flags=re.S)
        else:
            text = text.replace(f"## {heading}\n", f"## {heading}\n\n{new}\n", 1)
        open(path, "w").write(text)
        written.append(file)
    return written
