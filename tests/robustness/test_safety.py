"""Safety: nothing that can run code is ever loaded, and model files are checked before use."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import facecluster
from facecluster import faces

SRC = Path(facecluster.__file__).resolve().parent
# Modules whose loading runs code hidden in the file. `pickle` itself may be imported only to
# subclass its Unpickler with a `find_class` that admits an allowlist (what torch's
# ``weights_only`` does); pickle.load/loads and a bare Unpickler are refused below.
CODE_LOADING_MODULES = {"_pickle", "cPickle", "dill", "cloudpickle", "shelve", "marshal", "joblib"}
FORBIDDEN_CALLS = {"eval", "exec", "read_pickle", "unsafe_load", "full_load", "load_model"}


def _keyword(call: ast.Call, name: str):
    for keyword in call.keywords:
        if keyword.arg == name and isinstance(keyword.value, ast.Constant):
            return keyword.value.value
    return None


def _keyword_node(call: ast.Call, name: str):
    return next((keyword.value for keyword in call.keywords if keyword.arg == name), None)


def unsafe_calls(tree: ast.AST) -> list[tuple[int, str]]:
    """Lines of a module that import a pickle-like module or load a file in a code-running way."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [alias.name for alias in node.names]
            module = node.module if isinstance(node, ast.ImportFrom) else None
            roots = {(module or name).split(".")[0] for name in names}
            if roots & CODE_LOADING_MODULES:
                found.append((node.lineno, f"imports {sorted(roots & CODE_LOADING_MODULES)}"))
            if module in ("numpy", "torch") and "load" in names:
                found.append((node.lineno, f"from {module} import load (call it as {module}.load to be checked)"))
        elif isinstance(node, ast.ClassDef):
            unpickler = any(ast.unparse(base).endswith("Unpickler") for base in node.bases)
            methods = {item.name for item in node.body if isinstance(item, ast.FunctionDef)}
            if unpickler and "find_class" not in methods:
                found.append((node.lineno, f"class {node.name} unpickles without a find_class allowlist"))
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
            if name in FORBIDDEN_CALLS:
                found.append((node.lineno, f"calls {name}()"))
            elif owner in ("pickle", "_pickle") and name in ("load", "loads", "Unpickler"):
                found.append((node.lineno, f"pickle.{name} runs whatever the file says"))
            elif name == "open" and owner == "Image" and _keyword_node(node, "formats") is None:
                found.append((node.lineno, "Image.open without formats= (an EPS file would reach Ghostscript)"))
            elif name == "load" and owner in ("np", "numpy") and _keyword(node, "allow_pickle") is not False:
                found.append((node.lineno, "np.load without allow_pickle=False"))
            elif name == "load" and owner == "torch" and _keyword(node, "weights_only") is not True:
                found.append((node.lineno, "torch.load without weights_only=True"))
            elif name == "load" and owner == "yaml" and "Safe" not in ast.unparse(node):
                found.append((node.lineno, "yaml.load without a SafeLoader"))
    return found


def test_the_scanner_catches_what_it_must():
    bad = ("pickle.loads(b)\nfrom joblib import load\nimport numpy as np\nnp.load(f)\nnp.load(f, allow_pickle=True)\n"
           "torch.load(f)\neval(s)\nyaml.load(s)\npd.read_pickle(p)\nfrom numpy import load\n"
           "class Loose(pickle.Unpickler):\n    pass\npickle.Unpickler(f).load()\nimport dill\nImage.open(p)\n")
    assert sorted(line for line, _ in unsafe_calls(ast.parse(bad))) == [1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15]
    good = ("np.load(f, allow_pickle=False)\ntorch.load(f, weights_only=True)\nyaml.load(s, Loader=yaml.SafeLoader)\n"
            "import pickle\nclass Strict(pickle.Unpickler):\n    def find_class(self, module, name):\n        raise KeyError\n"
            "Image.open(b, formats=FORMATS)\n")
    assert unsafe_calls(ast.parse(good)) == []


def test_no_source_file_loads_anything_that_can_run_code():
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 10
    problems = [f"{path.relative_to(SRC)}:{line}: {what}"
                for path in files for line, what in unsafe_calls(ast.parse(path.read_text(encoding="utf-8")))]
    assert problems == []


def test_mtcnn_weights_are_checked_before_loading(monkeypatch):
    faces.verify_mtcnn_weights()  # the installed files are the pinned ones
    monkeypatch.setitem(faces.MTCNN_SHA256, "rnet.onnx", "0" * 64)
    with pytest.raises(RuntimeError, match=r"rnet\.onnx: SHA-256 .* is not the pinned 0{64}; reinstall"):
        faces.MTCNNDetector()


def test_only_the_image_formats_we_read_are_ever_parsed():
    from facecluster import images

    assert set(images.FORMATS) == {"JPEG", "PNG", "BMP", "WEBP", "TIFF", "GIF"}
    assert "EPS" not in images.FORMATS and "PDF" not in images.FORMATS
