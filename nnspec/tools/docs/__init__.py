"""``nnspec docs -o site/``: a static reference site, generated from nnspec's own registries.

One page per layer kind (its arguments with types and defaults, its shape rule as a formula,
an example spec that is checked as the site is built, the example's summary and the PyTorch
source ``nnspec compile`` writes for it), the losses, the error codes of ``nnspec explain``
(each example with what ``check`` reports), and the README's language tour, command line and
Python API sections. Plain HTML, one stylesheet and one small script: no CDN, it works
offline and from ``file:`` URLs. Torch is not imported.

The site is built in a temporary folder beside the output and moved into place when it is
complete: a failure leaves the output as it was. An existing output folder is replaced only
when it is empty or a site this command wrote (it holds ``.nnspec-docs``).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..common import EXIT_OK, UsageError

# (shutil and tempfile are imported where a site is written: this module is imported
# whenever the command line's parser is built)

#: the file that marks a folder as a site ``nnspec docs`` wrote (and may replace)
MARKER = ".nnspec-docs"


def add_arguments(p) -> None:
    p.add_argument("-o", "--output", required=True, metavar="FOLDER",
                   help="the folder to write the site to (created; replaced when it is a "
                        "site nnspec docs wrote before or empty)")
    p.add_argument("--readme", metavar="PATH",
                   help="the README whose language sections become the tour (default: "
                        "nnspec's own)")
    p.add_argument("-q", "--quiet", action="store_true", help="no 'wrote' line")


def _pages(readme: str | None) -> dict[str, str]:
    """Every file of the site, by name."""
    from ... import __version__
    from ..explain import table as error_table
    from ..losses import _kinds as loss_kinds
    from . import html, kinds, pages, tour

    md = tour.markdown()
    text = tour.readme_text(readme)
    found = tour.sections(text)
    docs = [kinds.kind_doc(k) for k in kinds.unique_kinds()]
    nav_kinds = [html.NavKind(d.name, d.family) for d in docs]
    files = {}
    for d in docs:
        files[d.name] = html.kind_file(d.name)
        for a in d.aliases:
            files.setdefault(a, html.kind_file(d.name))

    out: dict[str, str] = {"style.css": html.CSS, "site.js": html.SCRIPT,
                           MARKER: "a site written by nnspec docs; nnspec docs may replace "
                                   "this folder\n"}

    def add(name: str, title: str, body: str) -> None:
        out[name] = html.page(title, body, html.sidebar(name, nav_kinds, __version__))

    losses = loss_kinds()
    codes = error_table()
    add("index.html", "Overview", pages.index_page(tour.intro(md, text), docs, len(losses),
                                                   len(codes), __version__))
    for title, name, page_title in tour.SECTIONS:
        if title not in found:
            raise UsageError(f"the README has no section '## {title}' for {name}")
        add(name, page_title, f"<h1>{page_title}</h1>\n" + tour.render(md, found[title], files))
    add("kinds.html", "Layer kinds", pages.kinds_index(docs))
    for d in docs:
        add(html.kind_file(d.name), d.name, pages.kind_page(d))
    add("losses.html", "Losses", pages.losses_page(losses))
    add("errors.html", "Error codes",
        pages.errors_page(codes, lambda t: tour.inline(md, t)))
    return out


def _check_target(path: str) -> Path:
    """The output folder, refused (UsageError) where writing it would lose or half-write
    something."""
    if not path or path in ("-", "/dev/stdout"):
        raise UsageError("docs writes a folder of pages: give one with -o FOLDER")
    target = Path(path.rstrip("/") or "/")
    parent = target.parent
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise UsageError(f"cannot write the site to {path}: it is "
                         f"{'a link' if target.is_symlink() else 'a file'}, not a folder")
    if not parent.is_dir():
        raise UsageError(f"cannot write the site to {path}: no such folder {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write the site to {path}: the folder {parent} is not "
                         "writable")
    if target.is_dir():
        try:
            entries = os.listdir(target)
        except OSError as e:
            raise UsageError(f"cannot write the site to {path}: {e.strerror or e}") from None
        if entries and MARKER not in entries:
            raise UsageError(f"cannot write the site to {path}: it is a folder of other "
                             "files, not a site nnspec docs wrote; name a new or empty "
                             "folder")
    return target


def write_site(files: dict[str, str], path: str) -> Path:
    """The files written into a temporary folder beside ``path``, then moved into place (an
    old site moved aside first and removed after): nothing half-written on failure."""
    import shutil
    import tempfile

    target = _check_target(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.nnspec-", dir=target.parent))
    except OSError as e:
        raise UsageError(f"cannot write the site to {path}: {e.strerror or e}") from None
    old = None
    try:
        for name, text in files.items():
            (tmp / name).write_text(text, "utf-8")
        os.chmod(tmp, 0o777 & ~_umask())
        _check_target(path)  # again: the folder may have changed while the site was built
        if target.is_dir():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / "site")
        os.replace(tmp, target)
    except OSError as e:
        if old is not None and not target.exists():
            os.replace(old / "site", target)  # put the previous site back
        shutil.rmtree(tmp, ignore_errors=True)
        raise UsageError(f"cannot write the site to {path}: {e.strerror or e}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def build(path: str, readme: str | None = None) -> dict[str, str]:
    """Generate the site and write it to the folder ``path``; the files written, by name."""
    _check_target(path)  # refuse before the work, not after it
    files = _pages(readme)
    write_site(files, path)
    return files


def run(args) -> int:
    import sys
    import time

    start = time.perf_counter()
    files = build(args.output, args.readme)
    if not args.quiet:
        n = sum(name.endswith(".html") for name in files)
        print(f"nnspec: wrote {args.output} ({n} pages, {time.perf_counter() - start:.1f} s)",
              file=sys.stderr)
    return EXIT_OK
