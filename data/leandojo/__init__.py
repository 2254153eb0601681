"""LeanDojo Benchmark 4: traced theorems as problem sets and as tactic-level training examples.

One module per concern: `format` (the benchmark's files and records), `statements` (theorems as problems),
`tactics` (tactic SFT examples), `splits` (random and novel-premises splits, writing the layout), `trace`
(tracing a repository with LeanDojo). The names below are the package's public API.
"""

from data.leandojo.format import (
    BENCHMARK_DOI,
    BENCHMARK_URL,
    SOURCE,
    SPLITS,
    STRATEGIES,
    WHERE_TO_GET_IT,
    CorpusFile,
    PremiseUse,
    TracedTactic,
    TracedTheorem,
    benchmark_root,
    premise_index,
    read_corpus,
    read_theorems,
    remove_marks,
    theorem_from_json,
)
from data.leandojo.splits import split_by_premise, split_randomly, write_benchmark
from data.leandojo.statements import (
    SourceFiles,
    find_source_dir,
    load,
    load_problems,
    missing,
    scope_header,
    statement_from_source,
    statement_from_state,
    to_problem,
)
from data.leandojo.tactics import tactic_examples, tactic_prompt, write_tactic_examples
from data.leandojo.trace import corpus_from_traced, import_lean_dojo, theorem_from_traced, trace_repo

__all__ = [
    "BENCHMARK_DOI", "BENCHMARK_URL", "SOURCE", "SPLITS", "STRATEGIES", "WHERE_TO_GET_IT", "CorpusFile",
    "PremiseUse", "SourceFiles", "TracedTactic", "TracedTheorem", "benchmark_root", "corpus_from_traced",
    "find_source_dir", "import_lean_dojo", "load", "load_problems", "missing", "premise_index", "read_corpus",
    "read_theorems", "remove_marks", "scope_header", "split_by_premise", "split_randomly", "statement_from_source",
    "statement_from_state", "tactic_examples", "tactic_prompt", "theorem_from_json", "theorem_from_traced",
    "to_problem", "trace_repo", "write_benchmark", "write_tactic_examples",
]
