#!/usr/bin/env python3
"""Removes what a reused cargo target directory no longer needs: test and
bench executables superseded by a newer build of the same name (every
change to a crate links a new `<name>-<hash>` beside the old one, ~100-400
MB each), and incremental caches. CI reuses its target directory between
runs on the same machine (.ci/run), where these filled the disk.

    prune_target.py TARGET_DIR
"""
import os
import re
import shutil
import sys

EXECUTABLE = re.compile(r"^(?P<name>.+)-(?P<hash>[0-9a-f]{16})$")


def prune(target):
    freed = 0
    for profile in ("debug", "release"):
        deps = os.path.join(target, profile, "deps")
        if not os.path.isdir(deps):
            continue
        newest = {}
        for entry in os.scandir(deps):
            match = EXECUTABLE.match(entry.name)
            if not match or not entry.is_file() or not os.access(entry.path, os.X_OK):
                continue
            name = match["name"]
            mtime = entry.stat().st_mtime
            keep = newest.get(name)
            if keep is None or mtime > keep[0]:
                if keep is not None:
                    freed += remove(keep[1])
                newest[name] = (mtime, entry.path)
            else:
                freed += remove(entry.path)
        incremental = os.path.join(target, profile, "incremental")
        if os.path.isdir(incremental):
            freed += sum(
                os.path.getsize(os.path.join(root, f))
                for root, _, files in os.walk(incremental)
                for f in files
            )
            shutil.rmtree(incremental, ignore_errors=True)
    print(f"prune_target: freed {freed / 2**30:.1f} GiB in {target}")


def remove(path):
    size = os.path.getsize(path)
    os.remove(path)
    depfile = path + ".d"
    if os.path.exists(depfile):
        os.remove(depfile)
    return size


if __name__ == "__main__":
    prune(sys.argv[1])
