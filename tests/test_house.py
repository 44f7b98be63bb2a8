"""
House rules about the code itself, checked on its syntax tree: vpnkit
reads no private (C{_}-prefixed) name of another object or package, so a
Twisted upgrade that renames its internals cannot break vpnkit silently.
(The import direction between vpnkit's packages is checked by
L{tests.test_tcp_routing.LayeringTests}.)
"""

import ast
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent / "vpnkit"


def _private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _calls(node, function):
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == function


class _PrivateReads(ast.NodeVisitor):
    """
    Every C{x._name} in a module where C{x} is not the code's own object.

    Its own object is C{self} or C{cls}; a name bound to C{cls(...)} (the
    instance an alternate constructor is building); and C{super()} when
    the private name is one a base class defined in the same module
    defines (an override calling the one it overrides).  Nothing else is
    allowed: not another object's private attribute, even one of the same
    module, and not a base class's from another package.
    """

    def __init__(self, tree):
        self.classes = {node.name: node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
        self.found = []
        self._class = None
        self._own = frozenset()

    def visit_ClassDef(self, node):
        outer, self._class = self._class, node
        self.generic_visit(node)
        self._class = outer

    def visit_FunctionDef(self, node):
        outer = self._own
        self._own = frozenset(
            target.id
            for statement in ast.walk(node)
            if isinstance(statement, ast.Assign) and _calls(statement.value, "cls")
            for target in statement.targets
            if isinstance(target, ast.Name)
        )
        self.generic_visit(node)
        self._own = outer

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Attribute(self, node):
        if _private(node.attr) and not self._ownObject(node.value, node.attr):
            self.found.append(f"{node.lineno}: {ast.unparse(node)}")
        self.generic_visit(node)

    def _ownObject(self, value, name):
        if isinstance(value, ast.Name):
            return value.id in ("self", "cls") or value.id in self._own
        if _calls(value, "super") and not value.args and self._class is not None:
            return any(self._defines(base, name, set()) for base in self._bases(self._class))
        return False

    def _bases(self, klass):
        return [self.classes[b.id] for b in klass.bases if isinstance(b, ast.Name) and b.id in self.classes]

    def _defines(self, klass, name, seen):
        if klass.name in seen:
            return False
        seen.add(klass.name)
        for node in ast.walk(klass):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
                return True
            if isinstance(node, ast.Name) and node.id == name and isinstance(node.ctx, ast.Store):
                return True
            if (
                isinstance(node, ast.Attribute)
                and node.attr == name
                and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
            ):
                return True
        return any(self._defines(base, name, seen) for base in self._bases(klass))


def privateReads(source):
    """
    The private attributes of other objects C{source} reads, as
    C{"line: expression"}.
    """
    tree = ast.parse(source)
    finder = _PrivateReads(tree)
    finder.visit(tree)
    return finder.found


def definedPrivateNames(source):
    """
    The private names C{source} defines for objects: its methods and class
    attributes, and the attributes it assigns.
    """
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            for statement in node.body:
                if isinstance(statement, (ast.Assign, ast.AnnAssign)):
                    targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
                    names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    return {name for name in names if _private(name)}


def inheritedReads(source, defined):
    """
    The private names C{source} reads through C{self} or C{cls} that are
    not in C{defined} (those vpnkit defines): names only a base class from
    another package (Twisted) can provide.  It is a coarse net: a Twisted
    name that some vpnkit class happens to define too (C{_path}) passes.
    """
    reads = [
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute)
        and not isinstance(node.ctx, ast.Store)
        and isinstance(node.value, ast.Name)
        and node.value.id in ("self", "cls")
        and _private(node.attr)
        and node.attr not in defined
    ]
    reads.sort(key=lambda node: (node.lineno, node.col_offset))
    return [f"{node.lineno}: {ast.unparse(node)}" for node in reads]


def privateImports(source):
    """
    The private names and modules of other packages than vpnkit that
    C{source} imports, as C{"line: module.name"}.
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "vpnkit":
                continue
            if any(_private(part) for part in node.module.split(".")):
                found.append(f"{node.lineno}: {node.module}")
            found.extend(f"{node.lineno}: {node.module}.{a.name}" for a in node.names if _private(a.name))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] != "vpnkit" and any(_private(part) for part in parts):
                    found.append(f"{node.lineno}: {alias.name}")
    return found


class PrivateNamesTests(SynchronousTestCase):
    """
    vpnkit reads no private name of another object or package.
    """

    def scan(self, finder):
        problems = []
        for path in sorted(ROOT.rglob("*.py")):
            for problem in finder(path.read_text()):
                problems.append(f"{path.relative_to(ROOT.parent)}:{problem}")
        return problems

    def test_attributes(self):
        """
        No module under C{vpnkit/} reads C{x._name} of an object that is
        not its own (Twisted's, or another vpnkit class's: make the name
        public instead).
        """
        self.assertEqual(self.scan(privateReads), [])

    def test_inheritedAttributes(self):
        """
        No module under C{vpnkit/} reads through C{self} a private name
        vpnkit does not define anywhere, i.e. one of a Twisted base class
        (as C{HTTPChannel._command} was).
        """
        defined = set()
        for path in ROOT.rglob("*.py"):
            defined |= definedPrivateNames(path.read_text())
        self.assertEqual(self.scan(lambda source: inheritedReads(source, defined)), [])

    def test_imports(self):
        """
        No module under C{vpnkit/} imports a private name or module of
        another package (Twisted's C{_newclient}, C{_parseRequestLine}...).
        """
        self.assertEqual(self.scan(privateImports), [])


class ScannerTests(SynchronousTestCase):
    """
    The checks above find what they are meant to, and only that.
    """

    def test_foreignAttributes(self):
        """
        Another object's private attribute is found, read or written,
        whatever the object is.
        """
        source = (
            "def f(channel):\n"
            "    data = channel._dataBuffer\n"
            "    channel._dataBuffer = []\n"
            "class C:\n"
            "    def m(self):\n"
            "        return self.tcb._accepted, self._layer._counters, other()._x\n"
        )
        self.assertEqual(
            privateReads(source),
            [
                "2: channel._dataBuffer",
                "3: channel._dataBuffer",
                "6: self.tcb._accepted",
                "6: self._layer._counters",
                "6: other()._x",
            ],
        )

    def test_ownAttributes(self):
        """
        C{self}'s and C{cls}'s private names, the instance an alternate
        constructor builds, and dunders are allowed.
        """
        source = (
            "class C:\n"
            "    def m(self, x):\n"
            "        self._a = cls._b = x.__class__\n"
            "    @classmethod\n"
            "    def make(cls):\n"
            "        made = cls()\n"
            "        made._c = 1\n"
            "        return made\n"
        )
        self.assertEqual(privateReads(source), [])

    def test_super(self):
        """
        C{super()._name} is allowed only when a base class of the same
        module defines C{_name}: calling a Twisted base's private method is
        found.
        """
        source = (
            "from twisted.web import http\n"
            "class Base:\n"
            "    def _listen(self):\n"
            "        self._port = 1\n"
            "class Mine(Base):\n"
            "    def _listen(self):\n"
            "        super()._listen()\n"
            "        return super()._port\n"
            "class Channel(http.HTTPChannel):\n"
            "    def _finishRequestBody(self, data):\n"
            "        super()._finishRequestBody(data)\n"
            "class Other(Base):\n"
            "    def m(self):\n"
            "        super()._missing()\n"
        )
        self.assertEqual(privateReads(source), ["11: super()._finishRequestBody", "14: super()._missing"])

    def test_inherited(self):
        """
        Private names read through C{self} that the code defines nowhere
        (a base class's from another package) are found; those it defines,
        as methods, class attributes or assigned attributes, are not.
        """
        source = (
            "from twisted.web import http\n"
            "class Channel(http.HTTPChannel):\n"
            "    _limit = 3\n"
            "    def __init__(self):\n"
            "        self._line = None\n"
            "    def _own(self):\n"
            "        return self._line, self._limit, self._command, cls._path\n"
            "    def requestDone(self, request):\n"
            "        self._own()\n"
            "        del self._dataBuffer\n"
        )
        defined = definedPrivateNames(source)
        self.assertEqual(defined, {"_limit", "_line", "_own"})
        self.assertEqual(
            inheritedReads(source, defined),
            ["7: self._command", "7: cls._path", "10: self._dataBuffer"],
        )

    def test_imports(self):
        """
        Private names and modules of other packages are found; vpnkit's own
        modules are left to L{tests.test_tcp_routing.LayeringTests}.
        """
        source = (
            "from __future__ import annotations\n"
            "from twisted.web.http import HTTPChannel, _parseRequestLine\n"
            "from twisted.web._newclient import HTTP11ClientProtocol\n"
            "import twisted.web._newclient\n"
            "from vpnkit._speedups import onesSum\n"
            "from . import _local\n"
        )
        self.assertEqual(
            privateImports(source),
            [
                "2: twisted.web.http._parseRequestLine",
                "3: twisted.web._newclient",
                "4: twisted.web._newclient",
            ],
        )
