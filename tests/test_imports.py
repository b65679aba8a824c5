"""The package has no import circle (module-level imports only; imports inside functions are
deliberate lazy loads), and the light modules stay light."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fv2es"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _top_level_imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """fv2es modules imported at module level by ``path`` (``from a import b`` counts a.b if it is a module)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    # importing a.b.c also runs a and a.b
    out = set()
    for mod in found:
        parts = mod.split(".")
        out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    # A module's own ancestor packages are initialised before it runs: not a circle.
    ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    return {m for m in out if m in modules and m != name and m not in ancestors}


def import_graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(paths)
    return {name: _top_level_imports(path, name, modules) for name, path in paths.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_graph_sees_known_edges():
    graph = import_graph()
    assert "fv2es.models.config" in graph["fv2es.config"]
    assert "fv2es.models.registry" in graph["fv2es.config"]
    assert "fv2es.models.geometry" in graph["fv2es.pipeline.packing"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_registry_imports_no_model():
    """Every branch module imports the registry, so the registry names models but builds none
    (the factory does): otherwise registry -> model -> branch -> registry is a circle."""
    graph = import_graph()
    assert graph["fv2es.models.registry"] <= {"fv2es.errors", "fv2es.models", "fv2es.models.config"}
    assert "fv2es.models.registry" in graph["fv2es.models.factory"]
    # the failure vocabulary sits below both of the packages that report failures
    assert graph["fv2es.failures"] == set()
    assert "fv2es.failures" in graph["fv2es.data.transcripts"] and "fv2es.failures" in graph["fv2es.media.decode"]


def test_no_import_circle_in_the_package():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_config_and_the_stages_import_without_torch():
    """The driver and the decode tasks read the config, the presets and the stage classes but never compute:
    importing torch cost each decode worker ~2.6 s and ~0.7 GB (the actors import it when built)."""
    code = ("import sys; import fv2es.models.config, fv2es.models.geometry, fv2es.pipeline.packing, "
            "fv2es.config, fv2es.pipeline.stages, fv2es.models.registry; "
            "fv2es.models.registry.get_preset('fv2es_tiny'); "
            "heavy = [m for m in ('torch', 'timm', 'transformers') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
