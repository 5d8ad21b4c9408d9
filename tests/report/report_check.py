"""Shared checks of a report page made by tools/report/strata_report.py."""

import collections
import html.parser
import re

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
        "param", "source", "track", "wbr"}
# The only absolute URLs a page may hold: the namespaces of its inline SVGs.
ALLOWED_URLS = {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}


class _Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack = []
        self.errors = []
        self.tags = {}
        self.text = []
        self.class_rows = 0
        self._in_classes_body = False
        self._classes_depth = None

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        a = dict(attrs)
        if tag == "table" and "classes" in (a.get("class") or "").split():
            self._classes_depth = len(self.stack)
        if tag == "tbody" and self._classes_depth is not None:
            self._in_classes_body = True
        if tag == "tr" and self._in_classes_body:
            self.class_rows += 1
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append("</%s> closes <%s>" % (tag, self.stack[-1] if self.stack else "nothing"))
            if tag in self.stack:
                while self.stack and self.stack.pop() != tag:
                    pass
            return
        self.stack.pop()
        if tag == "tbody":
            self._in_classes_body = False
        if tag == "table" and self._classes_depth == len(self.stack):
            self._classes_depth = None

    def handle_data(self, data):
        self.text.append(data)


def parse(page):
    """Parses the page; returns the parser (tags, text, class_rows, errors)."""
    p = _Page()
    p.feed(page)
    p.close()
    if p.stack:
        p.errors.append("unclosed elements: %s" % " ".join(p.stack))
    p.all_text = " ".join(" ".join(p.text).split())
    return p


def problems(page, min_svgs=3):
    """A list of what is wrong with a report page (empty when it looks right)."""
    out = []
    p = parse(page)
    out.extend("HTML: " + e for e in p.errors[:10])
    if not page.lstrip().lower().startswith("<!doctype html>"):
        out.append("no <!DOCTYPE html>")
    n_svg = len(re.findall(r"<svg[\s>]", page))
    if n_svg < min_svgs:
        out.append("%d <svg> elements, expected at least %d" % (n_svg, min_svgs))
    if "<?xml" in page or "<!DOCTYPE svg" in page:
        out.append("an SVG's XML prolog or doctype was left in")
    urls = set(re.findall(r"https?://[^\s\"'<>)]*", page))
    bad = sorted(urls - ALLOWED_URLS)
    if bad:
        out.append("external references: %s" % ", ".join(bad[:5]))
    if re.search(r"<(script|link|img|iframe|object)\b", page, re.I):
        out.append("a script, link, img, iframe or object element (the page must stand alone)")
    if re.search(r"url\((?!#)", page) or "@import" in page:
        out.append("a CSS url() or @import that is not a local #id reference")
    ids = collections.Counter(re.findall(r'\bid="([^"]+)"', page))
    dup = {i for i, n in ids.items() if n > 1}
    if dup:
        out.append("duplicate ids: %s" % ", ".join(sorted(dup)[:5]))
    return out


def count_fmt(n):
    return "{:,}".format(int(n))
