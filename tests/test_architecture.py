"""The shape of the package, kept: every module imports, every import follows the rules table of
docs/architecture.md, the import graph has no cycle, no room imports one above it, only the
entry points reach the trainer, commands are leaves, one module spells the run folder's layout, only
infer/ samples tokens, data defines no module a method runs, and functions and the model stay short."""

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest
import torch

from conftest import ROOT

PACKAGE = ROOT / "ssl_zoo"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    """The ssl_zoo modules that module `name` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:  # `from ssl_zoo import plots` imports the module ssl_zoo.plots
                found.add(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r"ssl_zoo(\.\w+)+(:\w+)?", node.value):
            found.add(node.value.split(":")[0])  # "module" or "module:function": imported by name (import_module)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imports_of(name) for name in MODULES}


def rules_table() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """({room: module patterns}, {room: what it may import}) from docs/architecture.md."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Rooms and their rules", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]  # the header row first
    members, allowed = {}, {}
    for row in rows:
        room, modules, may = (cell.strip() for cell in row.strip("|").split("|"))
        members[room] = [m.strip(" `") for m in modules.split(",")]
        allowed[room] = [] if may == "-" else [m.strip(" `") for m in may.split(",")]
    return members, allowed


MEMBERS, ALLOWED = rules_table()


def matches(module: str, pattern: str) -> bool:
    """`nn.*` is the package nn and every module in it; `__init__` is the package ssl_zoo itself."""
    relative = module.removeprefix("ssl_zoo").lstrip(".") or "__init__"
    return relative == pattern or (pattern.endswith(".*") and (relative + ".").startswith(pattern[:-1]))


def room_of(module: str) -> str:
    rooms = [room for room, patterns in MEMBERS.items() if any(matches(module, p) for p in patterns)]
    assert len(rooms) == 1, f"{module} belongs to {rooms or 'no room'} of docs/architecture.md's table"
    return rooms[0]


def may_import(importer: str, imported: str) -> bool:
    room = room_of(importer)
    if room_of(imported) == room:
        return True
    return any(room_of(imported) == entry if entry in MEMBERS else matches(imported, entry) for entry in ALLOWED[room])


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_imports_and_belongs_to_one_room(name):
    importlib.import_module(name)
    room_of(name)


def test_every_import_follows_the_rules_of_docs_architecture():
    broken = [f"{a} -> {b} ({room_of(a)} -> {room_of(b)})" for a in sorted(GRAPH) for b in sorted(GRAPH[a])
              if not may_import(a, b)]
    assert not broken, "imports that docs/architecture.md does not allow:\n" + "\n".join(broken)


def test_the_rules_forbid_what_they_should():
    """The checker itself: the imports the architecture exists to prevent are refused."""
    assert not may_import("ssl_zoo.data.text", "ssl_zoo.methods.bert")  # data knows no method
    assert not may_import("ssl_zoo.infer.text", "ssl_zoo.checkpoint")  # evaluators build nothing
    assert not may_import("ssl_zoo.commands.serve", "ssl_zoo.cli")
    assert not may_import("ssl_zoo.nn.transformer", "ssl_zoo.data.tokenizer")
    assert may_import("ssl_zoo.methods.bert", "ssl_zoo.masking")
    assert not may_import("ssl_zoo.methods.gpt", "ssl_zoo.infer.load")  # decoding yes, loading checkpoints no
    assert not may_import("ssl_zoo.run.train", "ssl_zoo.commands.probe")  # the run wing stands below the commands
    assert "ssl_zoo.commands.compare" in GRAPH["ssl_zoo.cli"]  # imported by name: seen all the same


def test_the_import_graph_has_no_cycle():
    state = {}  # module -> "open" while on the path, "done" after

    def visit(module, path):
        state[module] = "open"
        for child in sorted(GRAPH[module]):
            if state.get(child) == "open":
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(child):] + [child]))
            if child not in state:
                visit(child, path + [child])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])


def test_no_room_imports_one_above_it():
    """The table lists the rooms bottom up: a room's allowed imports all come before it."""
    order = list(MEMBERS)
    for room, entries in ALLOWED.items():
        above = [e for e in entries if e in MEMBERS and order.index(e) > order.index(room)]
        above += [e for e in entries if e not in MEMBERS and order.index(room_of(f"ssl_zoo.{e}")) > order.index(room)]
        assert not above, f"{room} may import {above}, listed above it"


def test_commands_are_leaves():
    commands = {m for m in MODULES if m.startswith("ssl_zoo.commands.")}
    importers = {a: sorted(GRAPH[a] & commands) for a in GRAPH if GRAPH[a] & commands}
    assert set(importers) <= {"ssl_zoo.cli", "ssl_zoo.api"}, importers


LAYOUT_NAMES = {"config.yaml", "metrics.csv", "results.json", "checkpoints", "last.ckpt"}


def string_constants(path: Path) -> list[str]:
    """The string constants of a module that are not docstrings."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_only_the_run_folder_spells_its_file_names():
    from pytorch_lightning.loggers.csv_logs import ExperimentWriter

    from ssl_zoo.run import folder

    assert folder.METRICS == ExperimentWriter.NAME_METRICS_FILE  # the name Lightning's CSV logger writes
    spelled = {name: sorted(LAYOUT_NAMES & set(string_constants(path))) for name, path in MODULES.items()
               if name != "ssl_zoo.run.folder"}
    assert not {k: v for k, v in spelled.items() if v}, "ask ssl_zoo.run.folder.RunFolder for these paths"
    assert LAYOUT_NAMES <= set(string_constants(MODULES["ssl_zoo.run.folder"]))  # the check sees the names where they are


def test_only_infer_samples_tokens():
    sampling = {"multinomial", "sample_next", "searchsorted"}
    found = []
    for name, path in MODULES.items():
        if name.startswith("ssl_zoo.infer"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
                if called in sampling:
                    found.append(f"{name}: {called}")
    assert not found, found


def test_only_the_entry_points_import_the_trainer():
    assert {name for name, imported in GRAPH.items() if "ssl_zoo.run.train" in imported} == {"ssl_zoo.cli", "ssl_zoo.api"}


def test_data_defines_no_module_that_a_method_runs():
    for name in (m for m in MODULES if m.startswith("ssl_zoo.data")):
        module = importlib.import_module(name)
        runs = [cls.__name__ for _, cls in inspect.getmembers(module, inspect.isclass)
                if cls.__module__ == name and issubclass(cls, torch.nn.Module)]
        assert not runs, f"{name} defines {runs}: modules a method runs live in nn/, masking.py or views.py"


def test_functions_stay_short_and_the_model_and_train_py_small():
    long = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60:
                long.append(f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not long, long
    assert len((PACKAGE / "run" / "train.py").read_text().splitlines()) < 150
    assert len((PACKAGE / "nn" / "transformer.py").read_text().splitlines()) <= 260
