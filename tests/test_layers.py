"""
The import contract: the layers of docs/architecture.md, checked on the
source (an ast walk over sockproto/), so that no change blurs them.

- The chat's core (events, interfaces, names, session, accounts, hub)
  imports no front end, no back end, and none of what front ends speak
  with (twisted.web, wsproto, twisted.words).
- Front ends import no back end; back ends import no front end.
- The listening library (sockproto.service) imports no service.
- The composition root (sockproto.tap) is imported by no module.
- No function imports a module of sockproto: imports at the top show the
  dependencies, and a cycle cannot hide inside a function.  (The one
  exception: a module's __getattr__ that re-exports a moved name for one
  release, with a DeprecationWarning.)
- No module reads another object's private attributes (C{other._name}):
  what one piece needs of another is a public name of it.  (The one
  exception: Twisted's own transport buffer, L{sockproto.server}, which
  C{tests.test_faults} watches.)
"""

import ast
from pathlib import Path
from typing import Iterator, List, Tuple

from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent / "sockproto"

CORE = ["events", "interfaces", "names", "session", "accounts", "hub"]
SPOKEN = ("twisted.web", "wsproto", "twisted.words")
SERVICES = ("sockproto.echo", "sockproto.coucou", "sockproto.chat", "sockproto.tap")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> Iterator[Tuple[str, int, bool, str]]:
    """
    Each module C{path} imports: its absolute name, the line, whether the
    import is inside a function, and the name of that function.
    """
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(path)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]

    def walk(node: ast.AST, function: str) -> Iterator[Tuple[str, int, bool, str]]:
        for child in ast.iter_child_nodes(node):
            inner = function
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inner = child.name
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, child.lineno, bool(function), function
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")
                    parts = parts[: len(parts) - (child.level - 1)]
                    base = ".".join(parts + ([base] if base else []))
                yield base, child.lineno, bool(function), function
                for alias in child.names:  # "from . import tap"
                    yield f"{base}.{alias.name}", child.lineno, bool(function), function
            yield from walk(child, inner)

    yield from walk(tree, "")


PRIVATE_READS_ALLOWED = {("sockproto/server.py", "transport._tempDataLen")}


def private_reads(path: Path) -> Iterator[Tuple[int, str]]:
    """
    Each C{other._name} in C{path} whose C{other} is not C{self} or
    C{cls}: the line and the expression.
    """
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Attribute):
            continue
        if not node.attr.startswith("_") or node.attr.startswith("__"):
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue
        yield node.lineno, ast.unparse(node)


def sources() -> List[Path]:
    return sorted(p for p in ROOT.rglob("*.py"))


def within(name: str, prefixes: Tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


class LayerTests(SynchronousTestCase):
    def violations(self, paths: List[Path], forbidden: Tuple[str, ...]) -> List[str]:
        found = []
        for path in paths:
            for name, line, _, _ in imports(path):
                if within(name, forbidden):
                    found.append(f"{path.relative_to(ROOT.parent)}:{line} {name}")
        return found

    def test_the_chat_core_imports_no_front_end_no_back_end_no_wire(self) -> None:
        core = [ROOT / "chat" / f"{name}.py" for name in CORE]
        forbidden = ("sockproto.chat.frontends", "sockproto.chat.backends") + SPOKEN
        self.assertEqual(self.violations(core, forbidden), [])

    def test_front_ends_import_no_back_end(self) -> None:
        fronts = sorted((ROOT / "chat" / "frontends").rglob("*.py"))
        self.assertEqual(self.violations(fronts, ("sockproto.chat.backends",)), [])

    def test_back_ends_import_no_front_end(self) -> None:
        backs = sorted((ROOT / "chat" / "backends").rglob("*.py"))
        self.assertEqual(self.violations(backs, ("sockproto.chat.frontends",)), [])

    def test_the_listening_library_imports_no_service(self) -> None:
        library = [
            f"{name}:{line}"
            for name, line, local, function in imports(ROOT / "service.py")
            if within(name, SERVICES) and function != "__getattr__"
        ]
        self.assertEqual(library, [])

    def test_the_composition_root_is_imported_by_nothing(self) -> None:
        found = []
        for path in sources():
            for name, line, _, function in imports(path):
                if within(name, ("sockproto.tap",)) and function != "__getattr__":
                    found.append(f"{path.relative_to(ROOT.parent)}:{line}")
        self.assertEqual(found, [])

    def test_no_function_imports_a_module_of_sockproto(self) -> None:
        found = []
        for path in sources():
            for name, line, local, function in imports(path):
                if local and within(name, ("sockproto",)) and function != "__getattr__":
                    found.append(f"{path.relative_to(ROOT.parent)}:{line} {name}")
        self.assertEqual(sorted(set(found)), [])

    def test_no_module_reads_another_object_s_private_attributes(self) -> None:
        found = []
        for path in sources():
            where = str(path.relative_to(ROOT.parent))
            for line, expression in private_reads(path):
                if (where, expression) not in PRIVATE_READS_ALLOWED:
                    found.append(f"{where}:{line} {expression}")
        self.assertEqual(found, [])

    def test_the_private_walk_sees_private_reads(self) -> None:
        server = list(private_reads(ROOT / "server.py"))
        self.assertIn("transport._tempDataLen", [e for _, e in server])

    def test_the_walk_sees_imports(self) -> None:
        # A contract that can never fail checks nothing: the walk finds the
        # imports it must.
        names = {
            name for name, _, _, _ in imports(ROOT / "chat" / "frontends" / "line.py")
        }
        self.assertIn("sockproto.chat.hub", names)
        base = ROOT / "chat" / "frontends" / "base.py"
        self.assertIn("sockproto.lines", {name for name, _, _, _ in imports(base)})
