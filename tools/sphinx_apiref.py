"""Sphinx extension for the book's API reference (book/api/), loaded from _config.yml.

The reference documents every object once, in the module that defines it
(``vaelab.train.fit``), while readers and docstrings use the public paths
(``vaelab.fit``, ``vaelab.data.Sentences``). This extension

* resolves a Python cross-reference to a public path, or to a short name in a package's
  docstring (``:func:`elbo``` in ``vaelab.metrics``), to the entry where that object is
  documented, by importing the name and matching the object;
* adds the ``vaelab-public-names`` directive: a table of ``vaelab.PUBLIC_NAMES`` with a link
  to each entry and the first line of its docstring, generated at build time, so a name
  added to ``__all__`` appears without editing the page;
* warns (so the strict build fails) when a public name, i.e. one in the ``__all__`` (for vaelab itself ``PUBLIC_NAMES``) of
  ``vaelab`` or of any of its public modules, is documented nowhere: a new module then
  needs an ``automodule`` block on one of the pages under book/api/;
* lists every public method of a class, documented or not, but not a NamedTuple's field
  accessors, and keeps napoleon from reading the start of an attribute's docstring as
  its type.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import make_refnode

logger = logging.getLogger(__name__)
PACKAGE = "vaelab"
_MISSING = object()
_DOCUMENTED: dict = {}  # (id(env), number of objects) -> what _documented found


def _import(path: str):
    """The object a dotted path names (``vaelab.data.mnist``), or ``_MISSING``."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr, _MISSING)
            if obj is _MISSING:
                return _MISSING
        return obj
    return _MISSING


def _documented(env) -> dict:
    """``{(id(object), name): fullname}`` of every object the Python domain documents."""
    objects = env.get_domain("py").objects
    key = (id(env), len(objects))
    if key in _DOCUMENTED:
        return _DOCUMENTED[key]
    found = {}
    for fullname, entry in objects.items():
        if entry.objtype == "module" or entry.aliased or not fullname.startswith(PACKAGE + "."):
            continue
        obj = _import(fullname)
        if obj is not _MISSING:
            found[(id(obj), fullname.rpartition(".")[2])] = fullname
    _DOCUMENTED.clear()
    _DOCUMENTED[key] = found
    return found


def _entry_for(env, path: str):
    """The documented fullname of the object that ``path`` names, or None."""
    if not path.startswith(PACKAGE + ".") and path != PACKAGE:
        return None
    objects = env.get_domain("py").objects
    if path in objects and not objects[path].aliased:
        return path
    obj = _import(path)
    if obj is _MISSING:
        return None
    if inspect.ismodule(obj):
        return obj.__name__ if obj.__name__ in objects else None
    return _documented(env).get((id(obj), path.rpartition(".")[2]))


def resolve_public_path(app, env, node, contnode):
    """``missing-reference``: link a public path or short name to where the object is documented."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip(".~")
    module, cls = node.get("py:module"), node.get("py:class")
    candidates = [target]
    if module:
        candidates[:0] = [f"{module}.{target}"] + ([f"{module}.{cls}.{target}"] if cls else [])
    objects = env.get_domain("py").objects
    for candidate in candidates:
        fullname = _entry_for(env, candidate)
        if fullname is not None:
            break
    else:  # a short name used outside the module that imports it: unique among vaelab's objects?
        if "." in target or not module or not module.startswith(PACKAGE):
            return None
        matches = [name for name, entry in objects.items()
                   if name.startswith(PACKAGE + ".") and name.endswith("." + target) and not entry.aliased]
        if len(matches) != 1:
            return None
        fullname = matches[0]
    entry = objects[fullname]
    return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, fullname)


def public_names() -> dict[str, list[str]]:
    """``{module: __all__}`` for ``vaelab`` and every public module under it."""
    package = importlib.import_module(PACKAGE)
    modules = {PACKAGE: package}
    for info in pkgutil.walk_packages(package.__path__, PACKAGE + "."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            modules[info.name] = importlib.import_module(info.name)
    names = {}
    for name, module in modules.items():
        public = getattr(module, "PUBLIC_NAMES", None) or getattr(module, "__all__", None)  # vaelab: PUBLIC_NAMES
        if public is not None:
            names[name] = list(public)
        else:  # a module without __all__: its own public functions and classes
            names[name] = [
                attr for attr, value in vars(module).items()
                if not attr.startswith("_") and (inspect.isfunction(value) or inspect.isclass(value))
                and value.__module__ == name
            ]
    return names


def check_every_public_name_is_documented(app, env):
    """``env-check-consistency``: warn for each public name that no API page documents."""
    objects = env.get_domain("py").objects
    for module, names in public_names().items():
        if module not in objects:
            logger.warning(f"module {module} is public but has no automodule block under book/api/",
                           type="vaelab", subtype="apiref")
            continue
        for name in names:
            obj = _import(f"{module}.{name}")
            # A name in __all__ that the module lacks is tests/test_api.py's business, not the book's.
            if obj is _MISSING or _entry_for(env, f"{module}.{name}") is not None:
                continue
            home = getattr(obj, "__module__", None)
            home = home if isinstance(home, str) and home.startswith(PACKAGE + ".") else module
            logger.warning(f"{module}.{name} is public but not in the API reference: give it a docstring "
                           f"(a `#:` comment above a constant), and if {home} has no automodule block yet, "
                           f"add one to a page under book/api/ (`.. automodule:: {home}` with `:members:`)",
                           type="vaelab", subtype="apiref")


def _summary(obj) -> str:
    doc = inspect.getdoc(obj) or ""
    paragraph = doc.split("\n\n")[0]
    return " ".join(line.strip() for line in paragraph.splitlines())


class PublicNames(SphinxDirective):
    """``.. vaelab-public-names::``: every name of ``vaelab.PUBLIC_NAMES``, linked, with its summary."""

    has_content = False

    def run(self):
        package = importlib.import_module(PACKAGE)
        lines = [".. list-table::", "   :header-rows: 1", "   :widths: 30 70", "",
                 "   * - name", "     - summary"]
        for name in sorted(package.PUBLIC_NAMES, key=str.lower):
            obj = getattr(package, name)
            role = "class" if inspect.isclass(obj) else "func" if callable(obj) else "data"
            lines += [f"   * - :py:{role}:`~{PACKAGE}.{name}`", f"     - {_summary(obj)}"]
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source="vaelab-public-names"), self.content_offset, container)
        return container.children


def choose_members(app, what, name, obj, skip, options):
    """``autodoc-skip-member``: which members of a class are listed.

    * A NamedTuple's field accessors ("Alias for field number 0") are not: the class
      docstring's ``Attributes:`` section describes the fields already.
    * Every public method and property is, with its signature, even without a docstring
      (``head.log_prob``, ``History.state_dict``). Undocumented data attributes are not:
      the class docstrings describe them in ``Attributes:``, and listing them as well
      would describe each twice.
    """
    if (getattr(obj, "__doc__", None) or "").startswith("Alias for field number"):
        return True
    if what == "class" and skip and not name.startswith("_") and (
            inspect.isroutine(obj) or isinstance(obj, (property, functools.cached_property))):
        return False
    return None


_ATTRIBUTES = ("attribute", "data", "property")


def keep_attribute_docstring(app, what, name, obj, options, lines):
    """``autodoc-process-docstring``, before napoleon: remember an attribute's docstring.

    For an attribute, napoleon reads a first line ``X: y`` as "of type X", so a docstring
    such as "The decoder's likelihood: ..." would lose its first words to a type. The
    docstrings of attributes and properties here are plain reST, without Google sections,
    so they are restored as written after napoleon (:func:`restore_attribute_docstring`).
    """
    if what in _ATTRIBUTES:
        app.env.temp_data.setdefault("vaelab_attribute_docstrings", {})[name] = list(lines)


def restore_attribute_docstring(app, what, name, obj, options, lines):
    """``autodoc-process-docstring``, after napoleon: see :func:`keep_attribute_docstring`."""
    kept = app.env.temp_data.get("vaelab_attribute_docstrings", {}).pop(name, None)
    if what in _ATTRIBUTES and kept is not None:
        lines[:] = kept


def setup(app):
    app.setup_extension("sphinx.ext.autodoc")
    app.setup_extension("sphinx.ext.napoleon")  # its docstring handler has the default priority, 500
    app.connect("autodoc-skip-member", choose_members)
    app.connect("autodoc-process-docstring", keep_attribute_docstring, priority=400)
    app.connect("autodoc-process-docstring", restore_attribute_docstring, priority=600)
    app.connect("missing-reference", resolve_public_path)
    app.connect("env-check-consistency", check_every_public_name_is_documented)
    app.add_directive("vaelab-public-names", PublicNames)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
