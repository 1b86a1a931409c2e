"""The model builder's foundation: its state while it lowers one model (the nodes and
assertions made, the block calls being expanded, the named instances, the inferred types),
how it reports an error (report; the Reported and Abort exceptions carry a failure up), its
limits (budget, MAX_DEPTH, MAX_REPEAT), and how layers are named and appended to the IR
(name_for, node). The parts in arguments, blocks, pipelines and statements build on it;
builder.py assembles them into ModelBuilder."""

from __future__ import annotations

from dataclasses import dataclass

from ....core.diagnostics import Diagnostic, Failure
from ....core.limits import MAX_EXPANSIONS, MAX_MODEL_ERRORS, MAX_NODES
from ....core.record import Record
from ....core.source import Span
from ....ir import model as ir
from ....ir.names import child_name_problem
from .. import syntax as S
from .loader import Loader
from .values import FileScope, Tensor

MAX_DEPTH = 64
MAX_REPEAT = MAX_NODES


class Reported(Exception):
    """A stage whose errors are already reported: its statement's value is poisoned."""


class Abort(Exception):
    """Stops lowering one model: a limit was reached (its diagnostic says which)."""

    def __init__(self, diag: Diagnostic):
        super().__init__(diag.message)
        self.diag = diag


@dataclass(init=False, repr=False, eq=False)
class Instance(Record):
    """A layer or block application given a name (``as tower``), which may be applied again
    by that name with the same weights: what it was and the layer names it took. (A record
    class, see core/record.py.)"""

    kind: str            # layer kind or block name
    values: list         # its arguments, as bound the first time
    n: int               # its repetition count
    names: list[str]     # every name it took, in order (replayed by name_for)
    span: Span
    alias: str
    broken: bool = False

    def __init__(self, kind: str, values: list, n: int, names: list[str], span: Span,
                 alias: str, broken: bool = False):
        self.kind = kind
        self.values = values
        self.n = n
        self.names = names
        self.span = span
        self.alias = alias
        self.broken = broken


class BuilderBase:
    """The state and bookkeeping of a ModelBuilder (builder.py), shared by its parts."""

    def __init__(self, loader: Loader, scope: FileScope, model: S.Model):
        self.loader = loader
        self.scope = scope
        self.syn = model
        self.nodes: list[ir.Node] = []
        self.asserts: list[ir.Assert] = []
        self.counter = 0
        self.depth = 0
        self.taken: dict[str, set] = {}
        self.counts: dict[tuple, int] = {}
        self.calls: list[tuple[str, Span]] = []  # the block calls being expanded
        # for the source emitter's names (ir.Model._value_names, _block_args)
        self.value_names: dict[tuple[str, str], str] = {}
        self.block_args: dict[str, tuple] = {}
        self.expansions = 0
        self.n_errors = 0
        # weight sharing: the named layers and block instances of each scope, the names each
        # one's first application took (replayed when it is applied again), and the layer
        # of each name (the owners of tied weights)
        self.instances: dict[tuple[str, str], Instance] = {}
        self.recording: list[list[str]] = []
        self.replay: list[str] | None = None
        self.by_name: dict[str, ir.Node] = {}
        # inferred while lowering, for the names annotations bind (see bind_symbols)
        self.types: dict = {}
        self.typed = 0
        self.input_symbols: set[str] = set()
        # the values statements computed, for the warning about those never used
        self.made: list[tuple] = []  # (statement, name, value id, its layers' names)
        self.poisoned = False  # a statement failed: its inputs may look unused
        self.warn = True  # False for a model cut short at a syntax error
    def fail(self, code, msg, span, notes=(), hint=None):
        raise Failure(code, msg, span, list(notes), hint)

    def report(self, diag: Diagnostic) -> None:
        """Record an error of this model (with the block calls that lead to it). The same
        error reached through another call of the same block is reported once."""
        key = (diag.code, diag.message, diag.span)
        if key in self.loader.reported:
            return
        self.loader.reported.add(key)
        diag.notes += [f"in block {b}, called at {sp}" for b, sp in reversed(self.calls)]
        self.loader.diags.append(diag)
        self.n_errors += 1
        if self.n_errors >= MAX_MODEL_ERRORS:
            raise Abort(Diagnostic("E066", f"more than {MAX_MODEL_ERRORS} errors in model "
                                    f"{self.syn.name}; stopping here", self.syn.span))

    def budget(self, span: Span) -> None:
        """Count one layer or block expansion; refuse a model that expands without bound."""
        self.expansions += 1
        if self.expansions > MAX_EXPANSIONS or len(self.nodes) >= MAX_NODES:
            what = (f"more than {MAX_NODES:,} layers" if len(self.nodes) >= MAX_NODES
                    else f"more than {MAX_EXPANSIONS:,} layer and block expansions")
            notes = [f"in block {b}, called at {sp}" for b, sp in reversed(self.calls)]
            raise Abort(Diagnostic(
                "E059", f"model {self.syn.name} expands to {what}", span, notes,
                hint=f"nnspec builds at most {MAX_NODES:,} layers per model: check the "
                "repetition counts (`* n`) and blocks that call blocks several times"))

    def text(self, span: Span) -> str:
        src = self.loader.sources.get(span.file)
        if src is None:
            return ""
        line = src.line_text(span.line)
        end = span.end_col - 1 if span.end_line == span.line else len(line)
        t = line[span.col - 1:end].strip()
        if span.end_line != span.line:
            t += " ..."
        return t

    def new_id(self) -> str:
        self.counter += 1
        return f"v{self.counter}"

    def name_for(self, prefix: str, base: str, alias: str | None, span: Span) -> str:
        if self.replay:
            return self.replay.pop(0)  # a shared layer applied again: its names once more
        name = self._new_name(prefix, base, alias, span)
        for names in self.recording:
            names.append(name)
        return name

    def _new_name(self, prefix: str, base: str, alias: str | None, span: Span) -> str:
        taken = self.taken.setdefault(prefix, set())
        if alias is not None:
            # a name torch.nn.Module keeps data under (``training``): see nnspec.ir.names;
            # a path (`downsample.0`) names a child of nested containers, part by part
            parts = alias.split(".")
            bad = next((b for b in map(child_name_problem, parts) if b is not None), None)
            if bad is not None:
                self.loader.error("E070", bad[0], span, hint=bad[1])
            heads = {".".join(parts[:j]) for j in range(1, len(parts))}
            containers = self.taken.setdefault((prefix, "."), set())
            clash = alias if alias in taken or alias in containers else \
                next((h for h in sorted(heads) if h in taken), None)
            if clash is not None:
                self.fail("E030", f"the name {clash!r} is already used in this scope", span)
            taken.add(alias)
            containers |= heads
            return prefix + alias
        key = (prefix, base)
        i = self.counts.get(key, 0)
        while f"{base}_{i}" in taken:
            i += 1
        self.counts[key] = i + 1
        taken.add(f"{base}_{i}")
        return f"{prefix}{base}_{i}"

    def node(self, kind, p, inputs, span, prefix, alias=None, arg_spans=None, ties=None):
        """Append an IR node (p: validated params, or a dict to validate)."""
        if isinstance(p, dict):
            p = kind.Params.model_validate(p)
        if len(self.nodes) >= MAX_NODES:
            self.budget(span)
        shared = self.replay is not None
        name = self.name_for(prefix, kind.name, alias, span)
        node = ir.Node.build(self.new_id(), kind.name, name, [x.id for x in inputs], p, span,
                             arg_spans or {}, self.text(span), reversed(self.calls), shared,
                             ties)
        self.nodes.append(node)
        self.by_name.setdefault(name, node)
        return Tensor(node.id)
