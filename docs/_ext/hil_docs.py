"""Sphinx extension for hil's documentation: what is generated from the code at build time.

Directives (usable in MyST pages as fenced directives):

``hil-config-registry NAME``
    One section per type registered in ``hil.registry.NAME`` (``BLACKBOXES``, ``WRAPPERS``, ``OBJECTIVES``,
    ``ESTIMATORS``, ``OPTIMIZERS``, ``CALIBRATIONS``): the class, the first paragraph of its docstring, and a
    table of its ``Config`` dataclass (key, type, default, allowed range, the comment at the field).
``hil-config-class DOTTED.PATH``
    The same table for one config dataclass (``hil.optim.loop.LoopConfig``, ``hil.run.LogConfig``, ...).
``hil-bench-plot RESULTS.json``
    A figure drawn from a benchmark summary that ``hil bench TASK --json`` wrote: each method's best objective
    at the task's checkpoints (mean over seed sets, error bars one standard deviation). The PNG goes into the
    build's doctree folder, never into the source tree.
``hil-automodule-if-present MODULE``
    ``automodule`` of MODULE with its members when MODULE exists, else the directive's content (markdown).

The allowed range of a field is what it declares with :class:`hil.config.Range` in ``typing.Annotated``
metadata; a field that declares none shows a dash. Every page that uses a directive depends on the source files
of the classes it renders (and on the JSON it plots), so an incremental build re-reads it when they change.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import inspect
import io
import json
import math
import re
import textwrap
import tokenize
import types
import typing
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

REGISTRIES = ("BLACKBOXES", "WRAPPERS", "OBJECTIVES", "ESTIMATORS", "OPTIMIZERS", "CALIBRATIONS")

# -- reading config classes ---------------------------------------------------------------------------------------


def _import(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _is_config_class(obj: Any) -> bool:
    return isinstance(obj, type) and dataclasses.is_dataclass(obj)


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls, include_extras=True)
    except Exception:  # an annotation that cannot be resolved: show it as written
        out: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            out.update(getattr(klass, "__annotations__", {}))
        return out


def _first_paragraph(doc: str | None) -> str:
    if not doc:
        return ""
    doc = inspect.cleandoc(doc)
    para = doc.split("\n\n", 1)[0]
    return " ".join(line.strip() for line in para.splitlines())


def _own_docstring(cls: type) -> str:
    """The class's docstring, not the signature that ``@dataclass`` writes when there is none."""
    doc = cls.__dict__.get("__doc__") or ""
    if doc.startswith(cls.__name__ + "("):
        return ""
    return doc


def _field_comments(cls: type) -> dict[str, str]:
    """The comment written at each field (``name: T = v  # comment``, or ``#:`` / ``#`` lines just above)."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        lines = source.splitlines()
        comments: dict[int, str] = {}
        try:
            for tok in tokenize.generate_tokens(io.StringIO(source).readline):
                if tok.type == tokenize.COMMENT:
                    comments[tok.start[0]] = tok.string
        except (tokenize.TokenError, IndentationError):
            continue
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for stmt in body:
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
                continue
            text = []
            above = stmt.lineno - 1
            block: list[str] = []
            while above >= 1 and lines[above - 1].strip().startswith("#"):
                block.insert(0, lines[above - 1].strip())
                above -= 1
            text += [c.lstrip("#:").strip() for c in block]
            text += [comments[n].lstrip("#:").strip() for n in range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1)
                     if n in comments and not lines[n - 1].strip().startswith("#")]
            joined = " ".join(t for t in text if t)
            if joined:  # an override without a comment keeps the base class's
                out[stmt.target.id] = joined
    return out


def _fmt_number(v: float) -> str:
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and abs(v) < 2**53):
        n = int(v)
        for k in (31, 32, 63, 64):
            if n == 2**k - 1:
                return f"2^{k} − 1"
            if n == 2**k:
                return f"2^{k}"
        return f"{n:,}".replace(",", " ") if abs(n) >= 100_000 else str(n)
    if math.isinf(v):
        return ".inf" if v > 0 else "-.inf"
    if abs(v) > 1e30:
        return f"{v:.4g}"
    return f"{v:g}"


def _describe_range(r: Any) -> str:
    parts = []
    for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
        value = getattr(r, attr, None)
        if value is not None:
            parts.append(f"{sign} {_fmt_number(value)}")
    text = " and ".join(parts) or "any number"
    if getattr(r, "finite", True) is False:
        text += " (.inf allowed)"
    return text


def _strip(tp: Any) -> tuple[Any, list[Any]]:
    """``Annotated[T, m...]`` -> ``(T, [m...])``."""
    if typing.get_origin(tp) is typing.Annotated:
        base, *meta = typing.get_args(tp)
        inner, more = _strip(base)
        return inner, [*meta, *more]
    return tp, []


def _ranges(meta: list[Any]) -> list[Any]:
    from hil.config import Range

    return [m for m in meta if isinstance(m, Range)]


def _fmt_type(tp: Any) -> str:
    tp, _ = _strip(tp)
    if isinstance(tp, str):
        return tp
    if tp is type(None):
        return "null"
    if tp is Any:
        return "any"
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_fmt_type(a) for a in args)
    if origin is typing.Literal:
        kinds = sorted({type(a).__name__ for a in args})
        return " | ".join("null" if k == "NoneType" else k for k in kinds)
    if origin in (list, tuple):
        items = [a for a in args if a is not Ellipsis]
        inner = ", ".join(_fmt_type(a) for a in items) if items else "any"
        return f"list[{inner}]"
    if origin is dict or tp is dict:
        return "mapping"
    if dataclasses.is_dataclass(tp):
        return f"mapping ({tp.__name__})"
    return getattr(tp, "__name__", str(tp))


def _fmt_allowed(tp: Any) -> str:
    base, meta = _strip(tp)
    found = [_describe_range(r) for r in _ranges(meta)]
    origin = typing.get_origin(base)
    args = typing.get_args(base)
    if origin is typing.Literal:
        found.append("one of " + ", ".join("null" if a is None else str(a).lower() if isinstance(a, bool) else str(a)
                                           for a in args))
    elif origin in (typing.Union, types.UnionType):
        alts = [_fmt_allowed(a) for a in args if a is not type(None)]
        alts = [a for a in alts if a and a != "—"]
        if alts:
            text = "; ".join(dict.fromkeys(alts))
            found.append(text + (", or null" if type(None) in args else ""))
    elif origin in (list, tuple):
        items = [a for a in args if a is not Ellipsis]
        inner = [_fmt_allowed(a) for a in items]
        inner = [i for i in inner if i and i != "—"]
        if inner:
            found.append("each: " + "; ".join(inner))
    return "; ".join(found) if found else "—"


def _fmt_value(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        if isinstance(v, float) and math.isinf(v):
            return ".inf" if v > 0 else "-.inf"
        return repr(v)
    if isinstance(v, str):
        return v if v and v.strip() == v and not re.search(r"[:#\[\]{},]", v) else json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_fmt_value(x)}" for k, x in v.items()) + "}"
    if dataclasses.is_dataclass(v):
        return f"(the {type(v).__name__} defaults)"
    return repr(v)


def _fmt_default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return _fmt_value(f.default)
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        try:
            return _fmt_value(f.default_factory())  # type: ignore[misc]
        except Exception:
            return "(computed)"
    return "required"


# -- building nodes -----------------------------------------------------------------------------------------------

_INLINE = re.compile(r"``(.+?)``|:[\w:.-]+:`~?([^`<]+?)(?:\s*<[^>]*>)?`|`([^`]+)`")


def _inline(text: str) -> list[nodes.Node]:
    """Docstring or comment text as nodes: ``code``, :role:`target` and `x` become literals, the rest is text
    (no other markup is interpreted, so a docstring can never break the build)."""
    out: list[nodes.Node] = []
    pos = 0
    for m in _INLINE.finditer(text):
        if m.start() > pos:
            out.append(nodes.Text(text[pos : m.start()]))
        literal = m.group(1) or m.group(2) or m.group(3) or ""
        out.append(nodes.literal(literal, literal))
        pos = m.end()
    if pos < len(text):
        out.append(nodes.Text(text[pos:]))
    return out


def _para(text: str) -> nodes.paragraph:
    p = nodes.paragraph()
    p.extend(_inline(text))
    return p


def _table(header: list[str], rows: list[list[nodes.Node | str]], widths: list[int]) -> nodes.table:
    table = nodes.table(classes=["hil-config-table"])
    group = nodes.tgroup(cols=len(header))
    table += group
    for w in widths:
        group += nodes.colspec(colwidth=w)
    head = nodes.thead()
    group += head
    row = nodes.row()
    for h in header:
        row += nodes.entry("", nodes.paragraph(text=h))
    head += row
    body = nodes.tbody()
    group += body
    for cells in rows:
        row = nodes.row()
        for cell in cells:
            entry = nodes.entry()
            if isinstance(cell, str):
                entry += _para(cell)
            else:
                entry += cell
            row += entry
        body += row
    return table


def _literal_para(text: str) -> nodes.paragraph:
    return nodes.paragraph("", "", nodes.literal(text, text))


def config_table(cls: type, *, skip: tuple[str, ...] = ()) -> nodes.Node:
    """The table of a config dataclass: key, type, default, allowed, what it is."""
    fields = [f for f in dataclasses.fields(cls) if f.name not in skip and f.init]
    if not fields:
        return _para("No options.")
    hints = _hints(cls)
    comments = _field_comments(cls)
    rows = []
    for f in fields:
        tp = hints.get(f.name, f.type)
        rows.append([_literal_para(f.name), _literal_para(_fmt_type(tp)), _literal_para(_fmt_default(f)),
                     _fmt_allowed(tp), comments.get(f.name, "")])
    return _table(["key", "type", "default", "allowed", "what it is"], rows, [14, 14, 12, 18, 42])


def _source_files(cls: type) -> set[str]:
    files = set()
    for klass in cls.__mro__:
        try:
            path = inspect.getsourcefile(klass)
        except TypeError:
            continue
        if path:
            files.add(path)
    return files


class _Base(SphinxDirective):
    def depend_on(self, *objs: Any) -> None:
        for obj in objs:
            for path in _source_files(obj):
                self.env.note_dependency(path)

    def section(self, ident: str, title: str) -> nodes.section:
        node_id = nodes.make_id(ident)
        sec = nodes.section(ids=[node_id])
        sec += nodes.title(title, "", nodes.literal(title, title))
        std = self.env.get_domain("std")
        std.note_hyperlink_target(node_id, self.env.docname, node_id, title)  # {ref}`config-blackbox-cnon-twin`
        return sec


class ConfigRegistry(_Base):
    """``hil-config-registry BLACKBOXES``: one section per registered type."""

    required_arguments = 1
    #: ``:package:``: only types defined in this package (default ``hil``: hil and its plug-in layers, not another
    #: installed plug-in package such as examples/hil-example-plugin); ``:skip-keys:``: fields not to list
    option_spec = {"skip-keys": directives.unchanged, "package": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        from hil import registry

        name = self.arguments[0]
        if name not in REGISTRIES:
            raise self.error(f"hil-config-registry: {name!r} is not one of {', '.join(REGISTRIES)}")
        reg = getattr(registry, name)
        skip = tuple(k.strip() for k in self.options.get("skip-keys", "").split(",") if k.strip())
        kind = reg.kind.replace(" ", "-")
        package = self.options.get("package", "hil").strip() or "hil"
        out: list[nodes.Node] = []
        self.env.note_dependency(inspect.getsourcefile(registry) or "")
        for type_name in reg.names():
            obj = reg.get(type_name)
            module = getattr(obj, "__module__", "") or ""
            if not (module == package or module.startswith(package + ".")):
                continue  # another installed plug-in package's type
            if module.startswith("hil.testing"):  # the conformance tests' fixtures, not for configs
                continue
            cfg = getattr(obj, "Config", None)
            sec = self.section(f"config-{kind}-{type_name}", type_name)
            where = f"{module}.{getattr(obj, '__qualname__', type_name)}"
            intro = nodes.paragraph()
            intro += nodes.Text("Class ")
            intro += nodes.literal(where, where)
            intro += nodes.Text(f"; a section says type: {type_name}." if name != "CALIBRATIONS"
                                else f"; run it with hil calibrate {type_name} --rig CONFIG, options with "
                                     f"--option KEY=VALUE or the config's calibrate: section.")
            sec += intro
            doc = _first_paragraph(_own_docstring(obj) if isinstance(obj, type) else obj.__doc__)
            if doc:
                sec += _para(doc)
            summary = getattr(obj, "summary", None)
            if name == "CALIBRATIONS" and isinstance(summary, str) and summary:
                sec += _para(f"Measures: {summary}. Order in hil calibrate all: {getattr(obj, 'order', '?')}.")
            if _is_config_class(cfg):
                cfg_doc = _first_paragraph(_own_docstring(cfg))
                if cfg_doc:
                    sec += _para(cfg_doc)
                sec += config_table(cfg, skip=skip)
                self.depend_on(obj if isinstance(obj, type) else cfg, cfg)
            else:
                sec += _para("No Config dataclass: the section takes no options.")
            out.append(sec)
        return out


class ConfigClass(_Base):
    """``hil-config-class hil.optim.loop.LoopConfig``: the table of one config dataclass."""

    required_arguments = 1
    option_spec = {"no-doc": directives.flag}

    def run(self) -> list[nodes.Node]:
        cls = _import(self.arguments[0])
        if not _is_config_class(cls):
            raise self.error(f"hil-config-class: {self.arguments[0]} is not a dataclass")
        self.depend_on(cls)
        out: list[nodes.Node] = []
        intro = nodes.paragraph()
        intro += nodes.Text("Class ")
        intro += nodes.literal(self.arguments[0], self.arguments[0])
        intro += nodes.Text(".")
        out.append(intro)
        doc = _first_paragraph(_own_docstring(cls))
        if doc and "no-doc" not in self.options:
            out.append(_para(doc))
        out.append(config_table(cls))
        return out


# -- benchmark plots ----------------------------------------------------------------------------------------------


def draw_bench_summary(doc: dict[str, Any], png: Path, source: str) -> None:
    """Best objective at each checkpoint of a ``hil bench --json`` summary, per method (mean ± std over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budget = doc["budget"]
    fractions = doc["fractions"]
    seeds = doc.get("seeds") or [0]
    styles = {"gradient": "-o", "peer": "--s", "reference": ":^"}
    fig, ax = plt.subplots(figsize=(9.5, 5), dpi=100)
    finals = []
    for name, m in doc["methods"].items():
        xs = [f * budget for f, b in zip(fractions, m["best"], strict=True) if b is not None]
        ys = [b for b in m["best"] if b is not None]
        if not ys:
            continue
        errs = [s or 0.0 for s, b in zip(m.get("best_std") or [0.0] * len(fractions), m["best"], strict=True)
                if b is not None]
        finals.append(ys[-1])
        ax.errorbar(xs, ys, yerr=errs if len(seeds) > 1 else None, fmt=styles.get(m.get("kind"), "-o"),
                    capsize=3, markersize=4, label=f"{name} ({m.get('kind', '?')})")
    sense = doc.get("sense", "min")
    if sense == "min" and finals and min(finals) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("total device queries (all starts, probes included)")
    ax.set_ylabel(f"best objective found ({'lower' if sense == 'min' else 'higher'} is better)")
    n = len(seeds)
    ax.set_title(f"{doc.get('title', doc.get('task', ''))}: budget {budget} queries, {n} seed set{'s' if n > 1 else ''}"
                 f"\nbest at {', '.join(f'{int(100 * f)} %' for f in fractions)} of the budget"
                 + (" (mean ± std over seed sets)" if n > 1 else "") + f"; from {source}", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, metadata={"Software": None})
    plt.close(fig)


class BenchPlot(SphinxDirective):
    """``hil-bench-plot results/cnon.json``: a figure of a benchmark summary, drawn at build time."""

    required_arguments = 1
    option_spec = {"alt": directives.unchanged, "name": directives.unchanged}
    has_content = True

    def run(self) -> list[nodes.Node]:
        rel, path = self.env.relfn2path(self.arguments[0], self.env.docname)
        json_path = Path(path)
        if not json_path.is_file():
            raise self.error(f"hil-bench-plot: {self.arguments[0]} does not exist")
        self.env.note_dependency(rel)
        self.env.note_dependency(__file__)
        doc = json.loads(json_path.read_text())
        png = Path(self.env.doctreedir) / "hil-figures" / (json_path.stem + ".png")
        if not png.exists() or png.stat().st_mtime < max(json_path.stat().st_mtime, Path(__file__).stat().st_mtime):
            draw_bench_summary(doc, png, self.arguments[0])
        doc_dir = Path(self.env.srcdir) / Path(self.env.docname).parent
        uri = Path(_relpath(png, doc_dir)).as_posix()
        figure = nodes.figure()
        image = nodes.image(uri=uri, alt=self.options.get("alt", doc.get("title", json_path.stem)))
        figure += image
        if self.content:
            caption = nodes.caption()
            caption.extend(_inline(" ".join(self.content)))
            figure += caption
        return [figure]


def _relpath(path: Path, start: Path) -> str:
    import os

    return os.path.relpath(path, start)


# -- optional autodoc ---------------------------------------------------------------------------------------------


class AutomoduleIfPresent(SphinxDirective):
    """``hil-automodule-if-present hil.protocols``: the module's documentation (with its members unless
    ``:no-members:``) when it imports, else the directive's content (markdown)."""

    required_arguments = 1
    has_content = True
    option_spec = {"no-members": directives.flag}

    def run(self) -> list[nodes.Node]:
        module = self.arguments[0]
        try:
            imported = importlib.import_module(module)
        except Exception as exc:  # absent, or needs what this build lacks: the fallback text says so
            logger.info(f"hil-automodule-if-present: {module} not documented ({exc!r}); using the fallback text")
            imported = None
        container = nodes.container()
        if imported is not None:
            origin = getattr(imported, "__file__", None)
            if origin:
                self.env.note_dependency(origin)
            text = ["```{eval-rst}", f".. automodule:: {module}"]
            if "no-members" not in self.options:
                text += ["   :members:", "   :show-inheritance:"]
            text += ["```"]
        else:
            text = list(self.content)
        self.state.nested_parse(StringList(text, source=self.env.docname), self.content_offset, container)
        return container.children


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("hil-config-registry", ConfigRegistry)
    app.add_directive("hil-config-class", ConfigClass)
    app.add_directive("hil-bench-plot", BenchPlot)
    app.add_directive("hil-automodule-if-present", AutomoduleIfPresent)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
