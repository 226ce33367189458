"""Peak activation memory (spnas/arch/memory.py).

The per-layer table must give the same peak as the plain network's plan for any
decoded net, and that peak must be the one counted over the ops of the exported
float TFLite graph (every tensor alive from the op that makes it to the last op
that reads it): the definition holds for what actually runs, not for our own
drawing of the net.
"""

import numpy as np
import pytest

from spnas.arch.handoff import ARCH_FORMAT, stage_strings
from spnas.arch.memory import ActivationTable, ops_peak, plan_peak
from spnas.arch.plan import plan_model
from spnas.space import SKIP, SearchSpace, embedded_space, sample_choices, smoke_space
from tests.tiny_spaces import TINY

SPACES = {"smoke": smoke_space(10), "tiny": SearchSpace(**TINY), "embedded": embedded_space(10)}


def _arch(space, choices):
    return {"format": ARCH_FORMAT, "layers": list(choices),
            "stages": stage_strings(space, choices), "space": space.to_dict()}


def _nets(space, n, seed=0):
    rng = np.random.default_rng(seed)
    nets = [sample_choices(space, rng) for _ in range(n)]
    # the extremes: every skippable layer skipped, and nothing skipped at e6
    nets.append([SKIP if s.skippable else ("k3_e3" if s.searchable else s.fixed_choice)
                 for s in space.layers()])
    nets.append(["k5_e6" if s.searchable else s.fixed_choice for s in space.layers()])
    return nets


def test_ops_peak_counts_what_is_alive():
    sizes = {"a": 4, "b": 10, "c": 3, "d": 2}
    # a -> b -> c, then d = a + c: a stays alive through b and c
    assert ops_peak(sizes, [(("a",), "b"), (("b",), "c"), (("a", "c"), "d")]) == 4 + 10 + 3
    assert ops_peak(sizes, [(("a",), "b"), (("b",), "c")]) == 14
    assert ops_peak(sizes, [(("a",), "b"), (("b",), "c")], keep=("a",)) == 17


@pytest.mark.parametrize("name", sorted(SPACES))
def test_table_equals_the_plain_networks_plan(name):
    space = SPACES[name]
    table = ActivationTable.from_space(space)
    for choices in _nets(space, 30):
        assert table.count(choices) == plan_peak(plan_model(_arch(space, choices))), choices
    # the peak depends on the expansion and skip, not on the kernel
    for entries in table.layers.values():
        assert entries["k3_e3"] == entries["k5_e3"] and entries["k3_e6"] == entries["k5_e6"]
        assert entries["k3_e6"] > entries["k3_e3"]


def _tflite_peak(flatbuffer: bytes) -> int:
    """Bytes: the largest sum of activation tensors alive during one op of the graph."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_content=flatbuffer,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    ops = it._get_ops_details()
    details = {d["index"]: d for d in it.get_tensor_details()}
    inputs = [d["index"] for d in it.get_input_details()]
    activations = set(inputs) | {t for op in ops for t in op["outputs"]}
    sizes = {str(t): int(np.prod(details[t]["shape"])) * np.dtype(details[t]["dtype"]).itemsize
             for t in activations}
    graph = [([str(t) for t in op["inputs"] if t in activations], str(op["outputs"][0]))
             for op in ops]
    return ops_peak(sizes, graph)


@pytest.mark.parametrize("name", ["smoke", "embedded"])
def test_peak_is_that_of_the_exported_tflite_graph(name):
    from spnas.latency.probe import convert
    from spnas.models.builder import build_from_plan

    space = SPACES[name]
    table = ActivationTable.from_space(space)
    for choices in _nets(space, 1, seed=3):
        model = build_from_plan(plan_model(_arch(space, choices)))
        assert _tflite_peak(convert(model)) == 4 * table.count(choices), choices
