#!/usr/bin/env python3
"""Reads a matrix picture the way a browser or an SVG viewer would, and
prints what it holds as JSON, for the tests: `meshguard matrix -o svg|html`
and the demo's demo-matrix.html.

SVG is parsed by lxml (libxml2, strict XML: any error fails); HTML by
html5lib in strict mode (the WHATWG parsing algorithm browsers follow: any
parse error fails). Neither is ours, so a picture that only our own code
could read fails here.

    matrix_check.py FILE.svg|FILE.html

prints {"pictures": [{"title", "rows": [{"index", "label", "members"}],
"cols": [...], "cells": [{"row", "col", "state", "marked", "text",
"hover"}]}]} (one picture for SVG, one per <table class="matrix"> for HTML).
"""
import json
import sys

import html5lib
from lxml import etree

SVG = "{http://www.w3.org/2000/svg}"


def text_of(element):
    return "".join(element.itertext()).strip()


def headings(elements, key):
    return [
        {
            "index": int(e.get(key)),
            "label": text_of(e),
            "members": e.get("data-members").split(),
        }
        for e in elements
    ]


def svg(path):
    root = etree.parse(path, etree.XMLParser(resolve_entities=False, no_network=True)).getroot()
    if root.tag != SVG + "svg":
        raise SystemExit(f"{path}: the root element is {root.tag}, not svg")
    texts = list(root.iter(SVG + "text"))
    cells = []
    for g in root.iter(SVG + "g"):
        if g.get("class") != "cell":
            continue
        title = g.find(SVG + "title")
        rect = g.find(SVG + "rect")
        label = g.find(SVG + "text")
        if title is None or rect is None or label is None:
            raise SystemExit(f"{path}: a cell without title, rect or text")
        cells.append({
            "row": int(g.get("data-row")),
            "col": int(g.get("data-col")),
            "state": g.get("data-state"),
            "marked": g.get("data-marked") == "true",
            "fill": rect.get("fill"),
            "text": text_of(label),
            "hover": title.text or "",
        })
    return [{
        "title": text_of(next(t for t in texts if t.get("class") == "title")),
        "rows": headings([t for t in texts if t.get("class") == "row"], "data-row"),
        "cols": headings([t for t in texts if t.get("class") == "col"], "data-col"),
        "cells": cells,
        "legend": [
            {"entry": int(t.get("data-entry")), "line": text_of(t.find(SVG + "tspan[@class='line']"))}
            for t in texts
            if t.get("class") == "legend"
        ],
    }]


def html(path):
    parser = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False)
    with open(path, "rb") as f:
        document = parser.parse(f)
    pictures = []
    for section in document.iter("section"):
        table = next((t for t in section.iter("table") if t.get("class") == "matrix"), None)
        if table is None:
            continue
        titles = [text_of(h) for h in section.iter("h2")]
        cells = [
            {
                "row": int(td.get("data-row")),
                "col": int(td.get("data-col")),
                "state": td.get("data-state"),
                "marked": td.get("data-marked") == "true",
                "class": td.get("class"),
                "text": text_of(td),
                "hover": td.get("title") or "",
            }
            for td in table.iter("td")
        ]
        pictures.append({
            "title": titles[0] if titles else text_of(next(document.iter("h1"))),
            "rows": headings([th for th in table.iter("th") if th.get("class") == "row"], "data-row"),
            "cols": headings([th for th in table.iter("th") if th.get("class") == "col"], "data-col"),
            "cells": cells,
        })
    return pictures


def main():
    path = sys.argv[1]
    pictures = svg(path) if path.endswith(".svg") else html(path)
    json.dump({"pictures": pictures}, sys.stdout)


if __name__ == "__main__":
    main()
