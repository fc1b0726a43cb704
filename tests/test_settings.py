"""One mechanism for settings: a component declares what each setting may be in the annotation of the
parameter that takes it; the start-up check reads the declarations from there (a subclass's too), and
no constructor checks again a value the start-up check covers."""

import ast
import importlib
import inspect
from typing import Annotated

import pytest

from conftest import ROOT
from ssl_zoo import settings
from ssl_zoo.build import check_settings
from ssl_zoo.errors import BadValue
from ssl_zoo.methods.bert import BERT
from ssl_zoo.methods.byol import BYOL
from ssl_zoo.optim import OptimConfig
from ssl_zoo.settings import FLAG, Nested, OneOf, Range


def test_a_class_declares_its_settings_and_inherits_its_bases():
    declared = settings.declared(BERT)
    assert declared["select_prob"] == Range(0, 1, above=True)  # its own
    assert declared["optim"] == Nested(OptimConfig)  # SSLMethod's, handed on through **text
    assert settings.declared(OptimConfig)["name"] == OneOf(("adamw", "lars", "sgd"))  # a dataclass's fields
    assert "tau_base" in settings.declared(BYOL)


def test_the_start_up_check_reads_a_new_components_declarations():
    class Next:  # a component that lands later: declaring is all it takes
        def __init__(self, width: Annotated[int, Range(1, whole=True)] = 8, flag: Annotated[bool, FLAG] = True):
            pass

    settings.check("method.", {"width": 4, "flag": False}, Next)
    with pytest.raises(BadValue, match="method.width=0 is out of range; it must be a whole number at least 1"):
        settings.check("method.", {"width": 0}, Next)
    with pytest.raises(BadValue, match="method.flag=yes is not one of: true, false"):
        settings.check("method.", {"flag": "yes"}, Next)
    # Through the config: a node that names its class is checked against it, nested nodes too.
    node = {"_target_": "ssl_zoo.methods.bert.BERT", "select_prob": 0.15, "optim": {"lr": -1}}
    with pytest.raises(BadValue, match="method.optim.lr=-1 is out of range"):
        check_settings({"method": node})


def constructor_checks(module) -> set[str]:
    """The setting names that module's code passes to check_range as a literal key ("method.top_k" -> top_k)."""
    names = set()
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "check_range" and node.args:
            if isinstance(key := node.args[0], ast.Constant) and isinstance(key.value, str):
                names.add(key.value.rsplit(".", 1)[-1])
    return names


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "ssl_zoo" / "methods").glob("*.py")) + ["data.image", "data.text",
                                                                                                    "data.speech", "optim", "eval.probe"])
def test_no_constructor_checks_again_what_the_start_up_check_covers(name):
    module = importlib.import_module(f"ssl_zoo.{name}" if "." in name or name == "optim" else f"ssl_zoo.methods.{name}")
    declared = set()
    for _, cls in inspect.getmembers(module, inspect.isclass):
        if cls.__module__ == module.__name__:
            declared |= set(settings.declared(cls))
    assert not constructor_checks(module) & declared, "checked twice: declared, and checked again in the code"


def test_another_librarys_class_declares_nothing_even_with_names_it_never_imports():
    class Foreign:  # as a Lightning logger annotates: a forward reference that does not resolve here
        def __init__(self, run: "Run | None" = None, offline: bool = False):  # noqa: F821
            pass

    assert settings.declared(Foreign) == {}  # nor a plain bool: we give wandb's offline auto too
    settings.check("logger.wandb.", {"run": None, "offline": True}, Foreign)
