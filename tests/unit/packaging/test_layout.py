"""The layout's structural rules, so they cannot quietly regress: no C or C++ source in the product, no build
tool or oneDNN headers in any install step, short functions, weight decay only in the optimizer, and a contract
module both sides can import without MindSpore or the Kubernetes client."""
from __future__ import annotations

import ast
import pathlib
import re
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[3]
PRODUCT = ("operator", "trainer")
MAX_FUNCTION_LINES = 60
# Pure data tables (a function that only builds one literal structure), allowed to be longer: "path:qualified name".
LONG_DATA_TABLES: set = set()  # none needs it today
C_SOURCE_SUFFIXES = (".c", ".cc", ".cpp", ".cxx", ".h", ".hh", ".hpp")
INSTALL_STEP_FILES = ("Dockerfile", "Makefile", ".ci/run")


def _product_files(pattern: str = "*") -> list:
    return sorted(p for top in PRODUCT for p in (REPO / top).rglob(pattern)
                  if p.is_file() and "__pycache__" not in p.parts)


def _functions(source: str):
    """(qualified name, lines) of every function and method in a module's source, nested ones included; the lines
    run from `def` to the last line of the body, decorators excluded."""
    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield prefix + child.name, child.end_lineno - child.lineno + 1
                yield from visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                yield from visit(child, f"{prefix}{child.name}.")
            else:
                yield from visit(child, prefix)

    yield from visit(ast.parse(source), "")


def _function_lengths() -> dict:
    return {f"{path.relative_to(REPO).as_posix()}:{name}": lines
            for path in _product_files("*.py") for name, lines in _functions(path.read_text(encoding="utf-8"))}


def test_no_c_or_cpp_source_in_the_product():
    found = [p.relative_to(REPO).as_posix() for p in _product_files() if p.suffix.lower() in C_SOURCE_SUFFIXES]
    assert found == []


def test_no_install_step_brings_a_compiler_or_onednn():
    for name in INSTALL_STEP_FILES:
        path = REPO / name
        if not path.exists():
            continue
        logical = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8")).splitlines()
        installs = [line for line in logical if "install" in line and not line.lstrip().startswith("#")]
        bad = [line.strip() for line in installs
               if re.search(r"onednn|dnnl|mkl-dnn|g\+\+|\bgcc|clang|build-essential|cmake", line, re.I)]
        assert bad == [], f"{name}: {bad}"


def test_no_function_in_the_product_is_longer_than_60_lines_except_data_tables():
    long = {name: lines for name, lines in _function_lengths().items()
            if lines > MAX_FUNCTION_LINES and name not in LONG_DATA_TABLES}
    assert long == {}, "\n".join(f"{name} ({lines} lines)" for name, lines in sorted(long.items()))


def test_every_allowed_data_table_exists_and_is_long():
    """An allow-list entry that was renamed, removed or shortened is dropped from the list, not kept as a hole."""
    lengths = _function_lengths()
    stale = sorted(name for name in LONG_DATA_TABLES if lengths.get(name, 0) <= MAX_FUNCTION_LINES)
    assert stale == [], {name: lengths.get(name) for name in stale}


def test_the_function_length_rule_measures_from_def_to_the_last_line():
    source = ("@decorator\n@another\ndef f():\n    x = 1\n\n    return x\n\n\n"
              "class C:\n    def m(self):\n        def inner():\n            pass\n        return inner\n")
    # decorators excluded, a blank line inside counted; methods and nested functions measured on their own
    assert list(_functions(source)) == [("f", 4), ("C.m", 4), ("C.m.inner", 2)]


def test_weight_decay_lives_in_the_optimizer_only():
    pattern = re.compile(r"decayed_in_gradient|gradient_weight_decay")
    hits = [f"{p.relative_to(REPO).as_posix()}:{n}" for p in _product_files()
            for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
            if pattern.search(line)]
    assert hits == []


def test_the_contract_imports_neither_mindspore_nor_kubernetes():
    code = ("import sys, incv4.trainer.contract; "
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('mindspore', 'kubernetes')); "
            "assert not heavy, heavy")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
